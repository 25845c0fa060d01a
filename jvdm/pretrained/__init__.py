"""Published models, read from their usual files: each module maps one model's checkpoint keys
and config onto the matching jvdm module."""
