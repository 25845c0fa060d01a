"""Bad input to the two scripts, run in-process: each case exits with status 1 and one line that
names what was given and what was expected, without a traceback, and creates nothing."""

import os

import pytest

import sample
import train
from configs import bouncing_shapes_unet
from jvdm.cli import run_script
from jvdm.training.run_config import CONFIG_FILE, save_run_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNET = os.path.join(REPO, "configs", "bouncing_shapes_unet.py")


def _fails(main, argv, capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    run_script(main, argv)
  message = exit_info.value.code
  assert isinstance(message, str) and message.startswith("error: "), message
  assert "\n" not in message, message
  assert "Traceback" not in capsys.readouterr().err
  return message


@pytest.mark.parametrize(
  "arguments, expected",
  [
    (["--config.foo.bar=1"], ["unknown config field", "--config.foo.bar=1", "foo"]),
    (["--config.data.batch_size=abc"], ["--config.data.batch_size=abc", "expected an integer"]),
    (["--config.data.batch_size=2.5"], ["--config.data.batch_size=2.5", "expected an integer"]),
    (["--config.sample.eta=abc"], ["--config.sample.eta=abc", "expected a number"]),
    ([f"--config={REPO}/configs/nope.py"], ["cannot read the config file", "nope.py"]),
    ([f"--config={UNET}:huge"], ["Unknown variant 'huge'", "('default', 'long', 'tiny')"]),
    (["--nope=1"], ["Unknown command line flag 'nope'"]),
    (["--config.model.channel_mults=(1.5,2)"], ["channel_mults=(1.5, 2)", "an integer >= 1"]),
    (["--config.sample.eta=5"], ["sample.eta=5.0", "a number in [0, 1]"]),
    (["--config.train.num_steps=0"], ["train.num_steps=0", "an integer >= 1"]),
    (["--config.sample.sampler=ddimm"], ["sample.sampler='ddimm'", "one of", "'ddim'"]),
    (["--config.model.dtype=int8"], ["model.dtype='int8'", "'bfloat16'"]),
    (["--config.optim.learning_rate=-1.0"], ["learning_rate=-1.0", "a number > 0"]),
    (["--config.optim.warmup_steps=2000"], ["warmup_steps=2000", "num_steps=1600"]),
    (["--config.data.name=imagenet"], ["data.name='imagenet'", "'bouncing_shapes'"]),
    (["extra"], ["unexpected arguments ['extra']"]),
  ],
)
def test_train_py(tmp_path, capsys, arguments, expected):
  workdir = tmp_path / "run"
  message = _fails(train.main, ["train.py", f"--workdir={workdir}", *arguments], capsys)
  for fragment in expected:
    assert fragment in message, (fragment, message)
  assert not workdir.exists()


@pytest.fixture(name="workdir")
def fixture_workdir(tmp_path):
  """A UNet workdir with its config (the checks below come before any checkpoint is read)."""
  workdir = tmp_path / "unet"
  save_run_config(workdir, bouncing_shapes_unet.get_config("tiny"))
  return workdir


@pytest.mark.parametrize(
  "arguments, expected",
  [
    (["--eta=5"], ["sample.eta=5.0", "a number in [0, 1]"]),
    (["--frame_stagger=1.5"], ["sample.frame_stagger=1.5", "[0, 1)"]),
    (["--sampler=ddimm"], ["sample.sampler='ddimm'", "'ddim'"]),
    (["--steps=0"], ["sample.steps=0", "an integer >= 1"]),
    (["--steps=abc"], ["--steps=abc", "expected an integer"]),
    (["--num_samples=0"], ["num_samples must be >= 1", "0"]),
    (["--chunks=2"], ["--chunks 2", "causal DiT", "'unet3d'"]),
    (["--long=forever"], ["--long", "forever"]),
    (["--nope=1"], ["Unknown command line flag 'nope'"]),
  ],
)
def test_sample_py(workdir, capsys, arguments, expected):
  message = _fails(sample.main, ["sample.py", f"--workdir={workdir}", *arguments], capsys)
  for fragment in expected:
    assert fragment in message, (fragment, message)
  assert not (workdir / "samples").exists()


def test_sample_py_on_a_damaged_or_missing_workdir(workdir, tmp_path, capsys):
  config_file = workdir / CONFIG_FILE
  config_file.write_text(config_file.read_text()[:100])  # truncated
  message = _fails(sample.main, ["sample.py", f"--workdir={workdir}"], capsys)
  assert str(config_file) in message and "not valid JSON" in message, message
  message = _fails(sample.main, ["sample.py", f"--workdir={tmp_path / 'none'}"], capsys)
  assert "does not exist" in message, message
  message = _fails(sample.main, ["sample.py"], capsys)
  assert "--workdir" in message, message


WAN_FOLDER = os.path.join(REPO, "tests", "fixtures", "pretrained", "wan_t2v_tiny")
WAN_I2V_FOLDER = os.path.join(REPO, "tests", "fixtures", "pretrained", "wan_i2v_tiny")
PRETRAINED = [f"--pretrained={WAN_FOLDER}", "--prompt=a red square", "--steps=1"]


@pytest.mark.parametrize(
  "arguments, expected",
  [
    ([f"--pretrained={WAN_FOLDER}", "--workdir=w"], ["one of --workdir", "--pretrained"]),
    ([f"--pretrained={WAN_FOLDER}", "--out=o"], ["--pretrained needs --prompt"]),
    (PRETRAINED, ["--pretrained needs --out"]),
    ([*PRETRAINED, "--out=o", "--sampler=ddim"], ["--sampler does not apply to --pretrained"]),
    ([*PRETRAINED, "--out=o", "--num_frames=10"], ["num_frames=10", "4k + 1 frames"]),
    ([*PRETRAINED, "--out=o", "--width=50"], ["width=50", "multiples of 16"]),
    (["--pretrained=nowhere", "--prompt=a", "--out=o"], ["nowhere has no model_index.json"]),
    (["--workdir=w", "--negative_prompt=x"], ["--negative_prompt applies to --pretrained only"]),
    ([*PRETRAINED, "--out=o", "--image=first.png"], ["text-to-video model; it takes no --image"]),
    ([f"--pretrained={WAN_I2V_FOLDER}", "--prompt=a", "--out=o"], ["image-to-video", "--image"]),
    (
      [f"--pretrained={WAN_I2V_FOLDER}", "--prompt=a", "--out=o", "--image=none.png"],
      ["--image none.png is not an image file"],
    ),
  ],
)
def test_sample_py_pretrained(tmp_path, monkeypatch, capsys, arguments, expected):
  monkeypatch.chdir(tmp_path)
  message = _fails(sample.main, ["sample.py", *arguments], capsys)
  for part in expected:
    assert part in message, message
  assert not (tmp_path / "o").exists()
