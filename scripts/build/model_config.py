"""A model-config.yaml checked before it is archived, for what TorchServe 0.12 would misread or drop
without a word: the archive would load, and then serve otherwise than the file says.

- `maxBatchDelay: 0` reads as unset there, and the model waits TorchServe's default of 100 ms for
  every batch to fill (its ModelManager; 105 ms at c1 measured, docs/gpu.md): refused, 1 is the least;
- a negative or non-numeric batchSize, maxBatchDelay, worker count or timeout is logged as invalid
  and dropped by the frontend: refused here;
- a key TorchServe does not know is ignored; one that looks like a known key (`maxBatchdelay`,
  `batch_size`) is a typo, and refused with the key it meant. Other keys are left alone: a handler
  may read sections of its own;
- the `handler:` section, and the GPU variant's (`gpu:` merged over it, scripts/build/gpu_config.py),
  must parse as the handler parses them, so a typo fails `make archive`, not a worker at load (on
  the GPU image, where it would show first).
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from handlers.config import HandlerSettings, parse_settings
from scripts.build.gpu_config import gpu_variant

TORCHSERVE_KEYS = frozenset({
    "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout", "deviceType",
    "deviceIds", "parallelType", "parallelLevel", "torchrun", "jobQueueSize", "useJobTicket", "asyncCommunication",
    "continuousBatching", "sequenceBatching", "maxSequenceJobQueueSize", "sequenceMaxIdleMSec", "sequenceTimeoutMSec",
    "maxNumSequence", "maxRetryTimeoutInSec", "clientTimeoutInMills", "useVenv",
})
"""The keys of model-config.yaml that TorchServe 0.12's frontend reads (ModelConfig in its jar)."""
BUNDLE_SECTIONS = frozenset({"handler", "gpu"})
"""Read by this bundle: the handler's settings (handlers/config.py), the GPU image's changes."""
LEAST = {"batchSize": 1, "maxBatchDelay": 1, "minWorkers": 0, "maxWorkers": 0, "responseTimeout": 1, "startupTimeout": 1}
"""The whole numbers TorchServe takes as they are written, and the least of each it honours."""


def problems(config: Any, settings_class: type[HandlerSettings] | None = None) -> list[str]:
    """What TorchServe or the handler would misread in `config` (a parsed model-config.yaml), one line
    each; empty when it serves as written. `settings_class`: the handler's, to parse `handler:` with."""
    if not isinstance(config, Mapping):
        return [f"the file must be a mapping of keys to values, not {type(config).__name__}"]
    found = _key_problems(config, "")
    gpu = config.get("gpu")
    if isinstance(gpu, Mapping):
        found += _key_problems(gpu, "gpu.")
    elif gpu is not None:
        found.append(f"gpu: must be a mapping of the settings the GPU image changes, not {type(gpu).__name__}")
    if settings_class is not None:
        variants = {"handler": config, **({"gpu variant's handler": gpu_variant(dict(config))} if isinstance(gpu, Mapping) else {})}
        for where, variant in variants.items():
            try:
                parse_settings(settings_class, variant.get("handler"))
            except (TypeError, ValueError) as error:
                found.append(f"{where}: {error}")
    return found


def _key_problems(section: Mapping[str, Any], where: str) -> list[str]:
    found = []
    known = TORCHSERVE_KEYS | BUNDLE_SECTIONS
    for key in section:
        meant = _meant(str(key), known)
        if meant:
            found.append(f"{where}{key}: TorchServe does not read this key and would ignore it; did you mean {meant}?")
    for key, least in LEAST.items():
        if key not in section:
            continue
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int):
            found.append(f"{where}{key}: must be a whole number, not {value!r} (TorchServe would drop it)")
        elif key == "maxBatchDelay" and value == 0:
            found.append(f"{where}maxBatchDelay: 0 reads as unset in TorchServe 0.12, which then waits its default "
                         "100 ms for every batch to fill; 1 (ms) is the least it honours")
        elif value < least:
            found.append(f"{where}{key}: must be at least {least}, not {value} (TorchServe would drop it)")
    workers = section.get("minWorkers"), section.get("maxWorkers")
    if all(isinstance(count, int) for count in workers) and workers[0] > workers[1]:
        found.append(f"{where}minWorkers ({workers[0]}) is above maxWorkers ({workers[1]})")
    return found


def _meant(key: str, known: frozenset[str]) -> str | None:
    """The known key a stray one was likely meant to be (same letters in another case, `_` spelling,
    or one typo away); None for a key that is nobody's typo, or a known one."""
    if key in known:
        return None
    squashed = {name.lower(): name for name in known}
    plain = key.replace("_", "").replace("-", "").lower()
    if plain in squashed:
        return squashed[plain]
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.85)
    return close[0] if close else None


def check(config: Any, settings_class: type[HandlerSettings] | None, source: str) -> None:
    """Raise ValueError naming `source` and every problem, if there is one."""
    found = problems(config, settings_class)
    if found:
        raise ValueError(f"{source}: " + "; ".join(found))
