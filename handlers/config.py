"""The handler's own settings, read once from the `handler:` section of model-config.yaml.

One frozen dataclass per handler scope. Every field has a default; an unknown key is an error
that names it, so a typo in model-config.yaml fails the model load instead of being ignored.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, Mapping, TypeVar

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("fp32", "bf16", "fp16")
QUANTIZATIONS = ("none", "int8")
COMPILERS = ("none", "trace", "inductor", "cudagraphs")
RUNTIMES = ("torch", "onnxruntime")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
JPEG_DECODERS = ("auto", "pil", "torchvision")

S = TypeVar("S", bound="HandlerSettings")


@dataclass(frozen=True)
class HandlerSettings:
    """Settings every handler understands."""

    precision: str = "fp32"
    """Compute precision: fp32, or bf16/fp16 autocast (fp16 only on CUDA; bf16 on a CPU without
    native bf16 instructions runs in fp32, where emulated bf16 would be slower)."""
    threads: int = 0
    """Intra-op threads per worker (torch's, and onnxruntime's); 0: the machine's cores divided by
    the model's maxWorkers, so the workers of one model never oversubscribe the CPU."""
    runtime: str = "torch"
    """What runs the model: torch (the state_dict, eager or compiled), or onnxruntime (the archive's
    model.onnx, fp32, CPU; on a GPU worker torch runs instead unless onnxruntime-gpu is installed)."""
    graph_optimization: str = "all"
    """onnxruntime's graph optimisation level: disable, basic, extended or all (layout and fusions)."""
    ort_spinning: bool = False
    """Let onnxruntime's intra-op threads spin between operators (session.intra_op.allow_spinning).
    Off: served through TorchServe on 2 cores, spinning threads took the core the decoding needed."""
    decode_threads: int = 0
    """Threads decoding a batch's requests side by side (PIL and the tokenizer release the GIL);
    0: as many as `threads`. 1 decodes them one after another, in the thread that handles the batch."""
    pad_to_bucket: bool = False
    """Pad each batch with copies of its last item up to the next power of two (capped at batchSize),
    and warm every such size at load; the padding rows are dropped. A GPU then meets only shapes it
    has already compiled kernels and chosen cuDNN plans for: a new size stalled for 2-3 s (docs/gpu.md).
    Off: every size from 1 to batchSize is warmed instead, and batches run unpadded."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(f"graph_optimization must be one of {GRAPH_OPTIMIZATIONS}, got {self.graph_optimization!r}")
        for name in ("threads", "decode_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (auto) or positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class ImageSettings(HandlerSettings):
    """Pre- and post-processing of the image classifier."""

    topk: int = 5
    """How many labels to return, most probable first."""
    resize: int = 256
    """Shorter side after resizing, before the centre crop."""
    crop: int = 224
    """Side of the square centre crop fed to the model."""
    mean: tuple[float, ...] = IMAGENET_MEAN
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, ...] = IMAGENET_STD
    """Per-channel standard deviation divided out after the mean."""
    max_upscale: float = 16.0
    """How many times the shorter side may be enlarged to reach `resize`; smaller images (under
    16 px for resize 256: a tracking pixel, an icon) are refused (422): they hold nothing to classify."""
    max_aspect_ratio: float = 20.0
    """Longest side over shortest side accepted (422 above it): a 100000x1 strip is refused, not
    cropped to a sliver."""
    max_bytes: int = 20 * 1024 * 1024
    """Largest encoded image accepted (413 above it)."""
    max_pixels: int = 50_000_000
    """Largest width*height accepted, checked from the header before decoding (decompression bombs);
    a 50-megapixel phone JPEG (8160x6120) passes."""
    max_decoded_pixels: int = 16_000_000
    """Largest width*height really decoded, after a JPEG's reduced-scale (draft) decoding: the bound
    on a request's worker time and memory (16 Mpx: about 0.2 s and 48 MB of RGB here). PNG, WebP,
    TIFF, GIF and BMP decode at full size, so a 4000x4000 PNG passes and a 6300x6300 one is a 413;
    a JPEG of up to max_pixels decodes at 1/8 scale and passes (with jpeg_draft off, at full size)."""
    max_images: int = 16
    """Most images in one v2 request (413 above it): with max_decoded_pixels, the bound on what
    one request costs."""
    jpeg_draft: bool = True
    """Decode large JPEGs at 1/2, 1/4 or 1/8 scale in the DCT (PIL draft mode), never below twice
    `resize` on the shorter side: a 12-megapixel photo decodes several times faster."""
    channels_last: bool = False
    """Run the model on NHWC tensors: oneDNN's fast convolution layout on CPU, tensor cores' on GPU."""
    compile: str = "none"
    """none; trace: TorchScript trace + freeze (folds batch norms, under 1 s, the fastest on CPU here);
    inductor: torch.compile (minutes of compilation on 2 cores, once per worker start); cudagraphs (a
    GPU worker only): the eager model captured as one CUDA graph per warmed batch size and replayed."""
    jpeg_decoder: str = "auto"
    """Who decodes JPEGs: pil, per request on the CPU (reduced-scale draft decoding); torchvision, a
    batch's JPEGs in one torchvision.io.decode_jpeg call on the worker's device (nvjpeg on a GPU),
    resized and cropped there; auto: torchvision on a GPU worker, pil on a CPU one. What the batch
    decoder cannot take (other formats, CMYK, progressive, EXIF-rotated, over max_decoded_pixels)
    and a JPEG it fails on go through pil, one by one."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compile not in COMPILERS:
            raise ValueError(f"compile must be one of {COMPILERS}, got {self.compile!r}")
        if self.jpeg_decoder not in JPEG_DECODERS:
            raise ValueError(f"jpeg_decoder must be one of {JPEG_DECODERS}, got {self.jpeg_decoder!r}")
        if not 1 <= self.topk <= 1000:
            raise ValueError(f"topk must be in 1..1000, got {self.topk}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop ({self.crop}) must be positive and not above resize ({self.resize})")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")
        if not 0 < self.max_decoded_pixels <= self.max_pixels:
            raise ValueError(f"max_decoded_pixels ({self.max_decoded_pixels}) must be positive and not above "
                             f"max_pixels ({self.max_pixels})")
        for name in ("max_upscale", "max_aspect_ratio", "max_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TextSettings(HandlerSettings):
    """Limits, pooling and zero-shot labels of the text embedder."""

    quantize: str = "none"
    """none, or int8: dynamic int8 quantization of the Linear layers at load (CPU and fp32 only)."""
    int8_keep_fp32: tuple[str, ...] = field(default=(), metadata={"items": str})
    """Globs of Linear layer names that int8 leaves in fp32 (e.g. "encoder.layer.[0-3].output.dense")."""
    max_tokens: int = 256
    """Tokens per text, [CLS] and [SEP] included; longer texts are cut and the response says "truncated"."""
    max_texts: int = 64
    """Most texts in one request: items of "texts", or zero-shot labels (413 above it)."""
    max_chars: int = 20_000
    """Longest text or label accepted, in characters (413 above it), checked before tokenizing."""
    chars_per_token: int = 10
    """Each text is cut to max_tokens x chars_per_token characters before tokenizing: tokenizing
    costs per character, but only max_tokens tokens are kept. Real English, code and licence texts
    took at most 6.5 characters per token here, so their first max_tokens tokens are all kept."""
    max_request_tokens: int = 4096
    """Most tokens one request may ask the encoder for: its texts (each after the cut to max_tokens)
    and its zero-shot hypotheses together (413 above it). The bound on one request's work: 16 texts
    of max_tokens, or 64 sentences of 64 tokens, about 1 s of a worker here (docs/reliability.md)."""
    chunk_texts: int = 64
    """Most texts per forward pass: a larger batch runs in length-sorted chunks, each padded to its own longest."""
    chunk_tokens: int = 2048
    """Most token positions per forward pass, padding included (rows x the chunk's longest): one long
    text no longer pads 63 short ones to its length (5.5 s for 1,200 real tokens before)."""
    hypothesis_template: str = "This text is about {label}."
    """Zero-shot compares the text with this sentence for each label, not with the bare label word."""
    labels: tuple[str, ...] = field(default=(), metadata={"items": str})
    """Zero-shot labels used when a request sends "labels": [] (none: such a request is a 400)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {self.quantize!r}")
        if self.quantize == "int8" and self.precision != "fp32":
            raise ValueError(f"quantize int8 runs in fp32; precision {self.precision!r} cannot be combined with it")
        for name in ("max_texts", "max_chars", "chunk_texts", "chunk_tokens", "chars_per_token"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 ([CLS] and [SEP]), got {self.max_tokens}")
        if self.max_request_tokens < self.max_tokens:
            raise ValueError(f"max_request_tokens ({self.max_request_tokens}) must be at least max_tokens ({self.max_tokens}): "
                             "one long text must pass")
        if "{label}" not in self.hypothesis_template:
            raise ValueError(f"hypothesis_template must contain {{label}}, got {self.hypothesis_template!r}")
        try:
            self.hypothesis_template.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"hypothesis_template may use only {{label}}: {exc!r}") from None
        if not all(label.strip() for label in self.labels):
            raise ValueError("labels must be non-empty strings")


def parse_settings(settings_class: type[S], raw: Mapping[str, Any] | None) -> S:
    """Build `settings_class` from a mapping, rejecting unknown keys and wrong types by name."""
    raw = dict(raw or {})
    known = {f.name: f for f in fields(settings_class)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(
            f"unknown handler setting(s) {unknown} for {settings_class.__name__}; "
            f"known settings: {sorted(known)}"
        )
    values = {name: _coerce(name, value, known[name]) for name, value in raw.items()}
    return settings_class(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(name: str, value: Any, setting: Field) -> Any:
    """Check a YAML value against the type of the field's default (YAML lists become tuples)."""
    default = setting.default
    if setting.metadata.get("items") is str:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"handler setting {name!r} must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
            raise ValueError(f"handler setting {name!r} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(default, bool):
            raise ValueError(f"handler setting {name!r} has the wrong type: {value!r}")
        return value
    if isinstance(default, int) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ValueError(
        f"handler setting {name!r} must be {type(default).__name__}, got {value!r}"
    )
