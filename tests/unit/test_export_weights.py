"""scripts.build.weights main(): one clear line and exit status 1 when it cannot export."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch

from scripts.build.weights import check_labels_fit, main


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cached torchvision weights and no network, whatever this machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"offline test: {url} not fetched")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_pretrained_torchvision_offline_fails_clearly(offline, tmp_path, capsys):
    assert main(["resnet18", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("export_weights: cannot download ResNet18_Weights")
    assert "--random-init" in err and "resnet18-f37072fd.pth" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "resnet18" / "metadata.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no_such_model"], "unknown model 'no_such_model'"),
        (["mynet", "--module-file", "net.py"], "--module-file needs --class-name"),
        (["a", "b", "--module-file", "net.py", "--class-name", "Net", "--state-dict", "n.pth"], "exactly one model name"),
    ],
)
def test_bad_arguments_fail_with_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def custom_net_argv(tmp_path) -> list[str]:
    """A two-in, three-out Linear net, its state_dict and the argv that exports it to tmp_path/out."""
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 3)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    torch.save({"fc.weight": torch.ones(3, 2), "fc.bias": torch.zeros(3)}, tmp_path / "net.pth")
    return ["mynet", "--module-file", str(tmp_path / "net.py"), "--class-name", "Net",
            "--state-dict", str(tmp_path / "net.pth"), "--out", str(tmp_path / "out")]


def test_custom_model_exports(tmp_path, capsys):
    assert main(custom_net_argv(tmp_path)) == 0
    assert "exported mynet" in capsys.readouterr().out
    folder = tmp_path / "out" / "mynet"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "metadata.json", "labels.json", "net.py"}
    assert json.loads((folder / "metadata.json").read_text())["resources"]["parameters"] == 9


def test_custom_state_dict_that_does_not_fit_fails(tmp_path, capsys):
    (tmp_path / "net.py").write_text("from torch import nn\n\nclass Net(nn.Linear):\n    def __init__(self):\n        super().__init__(2, 3)\n")
    torch.save({"weight": torch.ones(5, 2), "bias": torch.zeros(5)}, tmp_path / "net.pth")
    argv = ["mynet", "--module-file", str(tmp_path / "net.py"), "--class-name", "Net",
            "--state-dict", str(tmp_path / "net.pth"), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    assert "size mismatch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # no empty mynet/ folder either


def test_export_failing_after_the_weights_leaves_nothing(tmp_path, capsys):
    """The weights are written before the config is read: a bad config must not leave them behind."""
    (tmp_path / "bad.yaml").write_text("handler:\n  tpok: 3\n")
    assert main([*custom_net_argv(tmp_path), "--config", str(tmp_path / "bad.yaml")]) == 1
    assert "'tpok'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failed_reexport_keeps_the_previous_export(tmp_path, capsys):
    argv = custom_net_argv(tmp_path)
    assert main(argv) == 0
    folder = tmp_path / "out" / "mynet"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (tmp_path / "bad.yaml").write_text("handler:\n  tpok: 3\n")
    assert main([*argv, "--config", str(tmp_path / "bad.yaml")]) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mynet"]  # no staging folder left


IMAGE_NET = (  # runs on the declared input, a 3x224x224 image: three scores per image
    "from torch import nn\n\nclass Net(nn.Module):\n"
    "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(3, 3)\n"
    "    def forward(self, x):\n        return self.fc(x.mean((2, 3)))\n"
)


@pytest.mark.parametrize("labels, exported", [("cat\ndog\nbird\n", True), ("cat\ndog\n", False), ('["a", "b", "c", "d"]', False)])
def test_labels_must_name_each_output(tmp_path, capsys, labels, exported):
    (tmp_path / "net.py").write_text(IMAGE_NET)
    torch.save({"fc.weight": torch.ones(3, 3), "fc.bias": torch.zeros(3)}, tmp_path / "net.pth")
    labels_file = tmp_path / ("labels.json" if labels.startswith("[") else "labels.txt")
    labels_file.write_text(labels)
    argv = ["mynet", "--module-file", str(tmp_path / "net.py"), "--class-name", "Net", "--state-dict", str(tmp_path / "net.pth"),
            "--labels", str(labels_file), "--out", str(tmp_path / "out")]
    assert main(argv) == (0 if exported else 1)
    if exported:
        assert json.loads((tmp_path / "out" / "mynet" / "labels.json").read_text()) == ["cat", "dog", "bird"]
    else:
        assert "but the model outputs 3: give one label per output" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_labels_are_not_checked_against_what_is_not_one_row_per_image():
    image = {"tensor": {"shape": [3, 8, 8]}}
    check_labels_fit(torch.nn.Identity(), image, ["a"])  # 4-D output: not class scores
    check_labels_fit(torch.nn.Linear(2, 3), image, ["a"])  # does not run on the declared input
    check_labels_fit(torch.nn.Flatten(), {"max_tokens": 8}, ["a"])  # a text model's input
    with pytest.raises(ValueError, match="name 1 classes but the model outputs 192"):
        check_labels_fit(torch.nn.Flatten(), image, ["a"])
