"""parse_settings: the `handler:` section of model-config.yaml, strict by name and type."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from handlers.config import IMAGENET_MEAN, IMAGENET_STD, HandlerSettings, ImageSettings, parse_settings
from models.registry import CONFIG_DIR, IMAGE_HANDLER, REGISTRY


@pytest.mark.parametrize("raw", [None, {}])
def test_defaults(raw):
    settings = parse_settings(ImageSettings, raw)
    assert settings == ImageSettings()
    assert (settings.precision, settings.topk, settings.resize, settings.crop) == ("fp32", 5, 256, 224)
    assert settings.mean == IMAGENET_MEAN and settings.std == IMAGENET_STD
    assert settings.max_bytes == 20 * 1024 * 1024 and settings.max_pixels == 50_000_000
    assert settings.max_decoded_pixels == 16_000_000


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ImageSettings().topk = 3


def test_yaml_lists_become_float_tuples():
    raw = yaml.safe_load("mean: [0, 0.5, 1]\nstd: [1, 1, 1]\ntopk: 3\nprecision: bf16\n")
    settings = parse_settings(ImageSettings, raw)
    assert settings.mean == (0.0, 0.5, 1.0) and isinstance(settings.mean, tuple)
    assert all(isinstance(v, float) for v in settings.std)
    assert (settings.topk, settings.precision) == (3, "bf16")
    hash(settings)  # tuples keep the frozen dataclass hashable


IMAGE_CONFIGS = sorted(
    {spec.config_path for spec in REGISTRY.values() if spec.handler == IMAGE_HANDLER} | {CONFIG_DIR / "custom_image.yaml"}
)


@pytest.mark.parametrize("path", IMAGE_CONFIGS, ids=lambda p: p.name)
def test_shipped_image_model_configs_parse(path):
    section = yaml.safe_load(path.read_text()).get("handler")
    assert section, f"{path.name} has no handler: section"
    settings = parse_settings(ImageSettings, section)
    assert {key: getattr(settings, key) for key in section} == {
        key: tuple(value) if isinstance(value, list) else value for key, value in section.items()
    }


@pytest.mark.parametrize(
    "settings_class, raw, named",
    [
        (ImageSettings, {"tpok": 5}, "tpok"),
        (ImageSettings, {"topk": 5, "Resize": 256}, "Resize"),
        (ImageSettings, {"max_size": 10, "mean_": [0, 0, 0]}, "max_size"),
        (HandlerSettings, {"topk": 5}, "topk"),  # an image setting given to a handler without images
    ],
)
def test_unknown_key_is_rejected_by_name(settings_class, raw, named):
    with pytest.raises(ValueError, match="unknown handler setting") as caught:
        parse_settings(settings_class, raw)
    assert repr(named) in str(caught.value)
    assert "precision" in str(caught.value)  # lists the known ones


@pytest.mark.parametrize(
    "raw",
    [
        {"topk": "5"},
        {"topk": 5.0},
        {"topk": True},
        {"topk": None},
        {"resize": [256]},
        {"max_bytes": 2.5e7},
        {"mean": 0.5},
        {"mean": "0.5, 0.5, 0.5"},
        {"std": {"r": 1}},
        {"precision": 16},
        {"precision": ["fp32"]},
    ],
    ids=repr,
)
def test_wrong_types_are_rejected(raw):
    (name,) = raw
    with pytest.raises(ValueError, match=repr(name)):
        parse_settings(ImageSettings, raw)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"crop": 300, "resize": 256}, "crop"),
        ({"crop": 0}, "crop"),
        ({"crop": -1}, "crop"),
        ({"topk": 0}, "topk"),
        ({"topk": -3}, "topk"),
        ({"topk": 1001}, "topk"),
        ({"precision": "fp8"}, "precision"),
        ({"precision": "FP32"}, "precision"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.2, 0.2, 0.2, 0.2]}, "std"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"std": [0.2, -1, 0.2]}, "std"),
        ({"max_upscale": 0.5}, "max_upscale must be at least 1"),
        ({"max_aspect_ratio": 0}, "max_aspect_ratio must be at least 1"),
    ],
    ids=repr,
)
def test_invalid_values_are_rejected(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(ImageSettings, raw)


@pytest.mark.parametrize(
    "raw",
    [{"topk": 1}, {"topk": 1000}, {"crop": 256, "resize": 256}, {"crop": 1, "resize": 1}, {"precision": "fp16"}],
    ids=repr,
)
def test_boundary_values_are_accepted(raw):
    settings = parse_settings(ImageSettings, raw)
    for key, value in raw.items():
        assert getattr(settings, key) == value


@pytest.mark.parametrize("items", [["a", "b", "c"], [None, 0.5, 0.5]], ids=["strings", "null"])
def test_non_numeric_list_item_names_the_setting(items):
    with pytest.raises(ValueError, match="'mean'"):
        parse_settings(ImageSettings, {"mean": items})


@pytest.mark.parametrize(
    "raw, message",
    [({"compile": "jit"}, "compile"), ({"threads": -1}, "threads"), ({"channels_last": "yes"}, "channels_last"),
     ({"jpeg_draft": 1}, "jpeg_draft")],
    ids=repr,
)
def test_speed_settings_are_checked(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(ImageSettings, raw)


def test_speed_setting_defaults():
    settings = ImageSettings()
    assert (settings.compile, settings.channels_last, settings.jpeg_draft, settings.threads) == ("none", False, True, 0)
