"""notebooks/quickstart.ipynb runs top to bottom on a fresh kernel, so it never goes stale."""

import json
import os
import pathlib
import sys

import jax
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from subprocess_env import cpu_environment

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 300  # from an empty compilation cache, with the other xdist worker busy
VIDEO_TAG = "shows-video"


def _kernel(tmp_path: pathlib.Path) -> KernelManager:
  """A python3 kernel on this interpreter (not whichever `python` an installed kernel spec
  names), with the suite's XLA flags and compilation cache; its temporary files (the notebook's
  training workdir) go to `tmp_path`."""
  kernels = tmp_path / "kernels"
  write_kernel_spec(str(kernels / "python3"))
  manager = KernelManager(
    kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
  )
  assert manager.kernel_spec.argv[0] == sys.executable
  return manager


def _outputs(cell, output_type: str) -> list:
  return [output for output in cell.outputs if output.output_type == output_type]


def _stdout(cell) -> str:
  return "".join(output.text for output in _outputs(cell, "stream") if output.name == "stdout")


@pytest.mark.e2e
def test_quickstart_notebook_runs_and_shows_videos(tmp_path):
  stored = NOTEBOOK.read_bytes()
  notebook_folder = sorted(os.listdir(NOTEBOOK.parent))
  notebook = nbformat.reads(stored.decode("utf-8"), as_version=4)
  # Stored without outputs: the repository stays small and its diffs clean.
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, cell.source
  video_cells = [cell for cell in notebook.cells if VIDEO_TAG in cell.metadata.get("tags", [])]
  assert len(video_cells) == 3

  temporary = tmp_path / "tmp"
  temporary.mkdir()
  environment = cpu_environment(
    8,
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
    TMPDIR=str(temporary),
  )
  # Run from notebooks/ as Jupyter does; the notebook finds the repository from there. Outputs
  # are kept in memory only: the file is never written.
  client = NotebookClient(
    notebook,
    km=_kernel(tmp_path),
    timeout=CELL_TIMEOUT_S,
    startup_timeout=120,
    resources={"metadata": {"path": str(NOTEBOOK.parent)}},
  )
  client.execute(env=environment)  # a cell's error raises CellExecutionError with its traceback

  code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
  for cell in code_cells:
    assert not _outputs(cell, "error"), cell.source
  outputs = "\n".join(_stdout(cell) for cell in code_cells)
  # The kernel imported this checkout's jvdm (not another installed copy).
  assert f"jvdm from: {REPO / 'jvdm'}\n" in outputs, outputs
  # The training workdir was made under the kernel's temporary folder, and trained.
  (workdir,) = temporary.glob("jvdm_quickstart_*")
  assert f"workdir: {workdir}\n" in outputs, outputs
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  final_loss = [r["loss"] for r in records if "loss" in r][-1]
  assert f"final loss: {final_loss:.4f} at step 4\n" in outputs, outputs
  assert (workdir / "samples" / "sample_seed0" / "samples.npz").is_file()
  for cell in video_cells:
    html = [output.data.get("text/html", "") for output in _outputs(cell, "display_data")]
    assert any("<video" in text for text in html), cell.source
  assert "(1, 9, 32, 48, 3) in [" in outputs and "(1, 17, 32, 48, 3)\n" in outputs, outputs

  # Nothing written beside the notebook (no checkpoints, no outputs saved into it).
  assert NOTEBOOK.read_bytes() == stored
  assert sorted(os.listdir(NOTEBOOK.parent)) == notebook_folder
