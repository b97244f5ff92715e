"""models.registry: each spec names its handler's settings class and reads them through parse_settings."""

from __future__ import annotations

import pytest

from handlers.config import ImageSettings, TextSettings
from models.registry import CONFIG_DIR, REGISTRY, TORCHVISION_CONFIG, custom_spec, get_spec
from scripts.measure.in_process import handler_class


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_spec_settings_class_is_its_handlers(name):
    spec = get_spec(name)
    assert spec.settings_class is handler_class(spec.handler).settings_class


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_settings_are_the_shipped_configs(name):
    spec = get_spec(name)
    section = spec.model_config()["handler"]
    settings = spec.settings()
    assert isinstance(settings, spec.settings_class)
    assert settings == spec.settings(section)
    assert all(getattr(settings, key) == (tuple(v) if isinstance(v, list) else v) for key, v in section.items())


def test_settings_take_defaults_from_the_settings_class():
    assert get_spec("minilm").settings({}) == TextSettings()
    assert custom_spec("mine", "net.py", "Net", "net.pth").settings({}) == ImageSettings()


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match="'tpok'"):
        get_spec("efficientnet_lite0").settings({"tpok": 3})


@pytest.mark.parametrize(("section", "crop"), [({"resize": 160, "crop": 128}, 128), ({}, ImageSettings.crop)])
def test_image_input_spec_follows_the_settings(section, crop):
    spec = get_spec("efficientnet_lite0")
    assert spec.input_spec(spec.settings(section))["tensor"]["shape"] == [3, crop, crop]


@pytest.mark.parametrize(("section", "max_tokens"), [({"max_tokens": 128}, 128), ({}, TextSettings.max_tokens)])
def test_text_input_spec_follows_the_settings(section, max_tokens):
    spec = get_spec("minilm")
    assert spec.input_spec(spec.settings(section))["max_tokens"] == max_tokens


def test_every_shipped_config_belongs_to_a_model():
    """One config per distinct model setup: the torchvision classifiers share theirs."""
    used = {spec.config_path for spec in REGISTRY.values()} | {CONFIG_DIR / "custom_image.yaml"}
    assert set(CONFIG_DIR.glob("*.yaml")) == used
    assert get_spec("resnet18").config_path == get_spec("resnet50").config_path == TORCHVISION_CONFIG
