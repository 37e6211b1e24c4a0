"""The model zoo: diffusion architectures built from their configuration, with random weights.

A dense network costs the same whatever its weights are, so the profiler builds each model from the
configuration of its published checkpoint (the numbers below restate those configurations) and never
downloads anything. A directory of real weights in diffusers' layout may be given instead (`load`).

Components carry diffusers' pipeline names: `text_encoder`, `text_encoder_2`, `text_encoder_3`, the
denoiser (`unet` or `transformer`) and `vae`. `NAME-tiny` is a small model of the same family (same
component classes, same inputs, same latent channels) for CPU tests; it has no published size.

Parameter counts are computed on torch's meta device (no memory, a fraction of a second) and pinned in
`PINNED_PARAMS`; `PUBLISHED_PARAMS` holds the sizes the model cards and papers give, with the precision
they give them (tests check both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.core.errors import ConfigError

# ---- component configurations (restated from the published checkpoints' config.json files) ----------

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
OPENCLIP_H = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  max_position_embeddings=77, hidden_act="gelu", projection_dim=512)
OPENCLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                     max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
VAE_SD = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              latent_channels=4, norm_num_groups=32)
VAE_SD3 = dict(VAE_SD, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
UNET_SD15 = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)
UNET_SD21 = dict(UNET_SD15, sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
UNET_SDXL = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
MMDIT_SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
                        num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                        pooled_projection_dim=2048, pos_embed_max_size=192)
DIT_PIXART_SIGMA = dict(sample_size=128, patch_size=2, in_channels=4, out_channels=8, num_layers=28, attention_head_dim=72,
                        num_attention_heads=16, cross_attention_dim=1152, caption_channels=4096, norm_type="ada_norm_single",
                        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False, interpolation_scale=2)

# Tiny variants: the same component classes at toy width and depth (CPU tests, CI).
CLIP_TINY = dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="gelu", projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)
T5_TINY = dict(vocab_size=1000, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
               relative_attention_num_buckets=8)
VAE_TINY = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4,
                norm_num_groups=8)  # 4 blocks: the real models' 8x latent downsampling
UNET_TINY = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)


@dataclass(frozen=True)
class Component:
    """One network of a pipeline: its class (module:Class) and the keyword configuration that builds it."""

    name: str
    cls: str
    config: dict[str, Any]
    role: str  # "text", "denoiser" or "vae"

    @property
    def is_transformers(self) -> bool:
        return self.cls.startswith("transformers:")


@dataclass(frozen=True)
class ModelSpec:
    """A text-to-image model: its components and how its denoiser is called (`kind`)."""

    name: str
    kind: str  # "unet", "unet-xl", "sd3", "pixart": the call signature of the denoiser and the encoders' outputs
    components: tuple[Component, ...]
    summary: str
    text_tokens: dict[str, int] = field(default_factory=dict)  # sequence length per text encoder
    t5_zeros_tokens: int = 0  # sd3 without T5: the pipeline feeds this many zero T5 tokens instead
    default_resolution: int = 512
    tiny: bool = False

    def component(self, role: str) -> list[Component]:
        return [c for c in self.components if c.role == role]

    @property
    def denoiser(self) -> Component:
        return self.component("denoiser")[0]

    @property
    def vae(self) -> Component:
        return self.component("vae")[0]

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config["latent_channels"])

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config["block_out_channels"]) - 1)

    @property
    def patch_size(self) -> int:
        return int(self.denoiser.config.get("patch_size", 1))


def _clip(name: str, cfg: dict, projection: bool) -> Component:
    cls = "transformers:CLIPTextModelWithProjection" if projection else "transformers:CLIPTextModel"
    return Component(name, cls, cfg, "text")


def _t5(name: str, cfg: dict) -> Component:
    return Component(name, "transformers:T5EncoderModel", cfg, "text")


def _unet(cfg: dict) -> Component:
    return Component("unet", "diffusers:UNet2DConditionModel", cfg, "denoiser")


def _vae(cfg: dict) -> Component:
    return Component("vae", "diffusers:AutoencoderKL", cfg, "vae")


def _specs() -> dict[str, ModelSpec]:
    unet_xl_tiny = dict(UNET_TINY, cross_attention_dim=64, use_linear_projection=True, addition_embed_type="text_time",
                        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    sd3_tiny = dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
                    num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=64,
                    pos_embed_max_size=64)
    pixart_tiny = dict(sample_size=16, patch_size=2, in_channels=4, out_channels=8, num_layers=2, attention_head_dim=8,
                       num_attention_heads=4, cross_attention_dim=32, caption_channels=32, norm_type="ada_norm_single",
                       norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False)
    clip_tiny_g = dict(CLIP_TINY, projection_dim=32)
    sd3_no_t5_note = "the paper's memory-saving 'reSD3-medium': T5 dropped, its tokens fed as zeros"
    specs = [
        ModelSpec("sd15", "unet", (_clip("text_encoder", CLIP_L, False), _unet(UNET_SD15), _vae(VAE_SD)),
                  "Stable Diffusion 1.5: UNet 860M, CLIP ViT-L/14 text encoder", {"text_encoder": 77}, default_resolution=512),
        ModelSpec("sd21", "unet", (_clip("text_encoder", OPENCLIP_H, False), _unet(UNET_SD21), _vae(VAE_SD)),
                  "Stable Diffusion 2.1: UNet 865M, OpenCLIP ViT-H/14 text encoder", {"text_encoder": 77}, default_resolution=768),
        ModelSpec("sdxl", "unet-xl", (_clip("text_encoder", CLIP_L, False), _clip("text_encoder_2", OPENCLIP_BIGG, True),
                                      _unet(UNET_SDXL), _vae(VAE_SD)),
                  "SDXL base 1.0: UNet 2.6B, CLIP ViT-L and OpenCLIP ViT-bigG", {"text_encoder": 77, "text_encoder_2": 77},
                  default_resolution=1024),
        ModelSpec("sd3-medium", "sd3", (_clip("text_encoder", CLIP_L, True), _clip("text_encoder_2", OPENCLIP_BIGG, True),
                                        _t5("text_encoder_3", T5_XXL),
                                        Component("transformer", "diffusers:SD3Transformer2DModel", MMDIT_SD3_MEDIUM, "denoiser"),
                                        _vae(VAE_SD3)),
                  "Stable Diffusion 3 medium: MMDiT 2B, CLIP-L, CLIP-G and T5-XXL",
                  {"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256}, default_resolution=1024),
        ModelSpec("sd3-medium-no-t5", "sd3", (_clip("text_encoder", CLIP_L, True), _clip("text_encoder_2", OPENCLIP_BIGG, True),
                                              Component("transformer", "diffusers:SD3Transformer2DModel", MMDIT_SD3_MEDIUM, "denoiser"),
                                              _vae(VAE_SD3)),
                  "Stable Diffusion 3 medium without T5-XXL: " + sd3_no_t5_note,
                  {"text_encoder": 77, "text_encoder_2": 77}, t5_zeros_tokens=256, default_resolution=1024),
        ModelSpec("pixart-sigma", "pixart", (_t5("text_encoder", T5_XXL),
                                             Component("transformer", "diffusers:PixArtTransformer2DModel", DIT_PIXART_SIGMA, "denoiser"),
                                             _vae(VAE_SD)),
                  "PixArt-Sigma XL-2 1024: DiT 0.6B, T5-XXL (300 tokens)", {"text_encoder": 300}, default_resolution=1024),
        # tiny variants
        ModelSpec("sd15-tiny", "unet", (_clip("text_encoder", CLIP_TINY, False), _unet(UNET_TINY), _vae(VAE_TINY)),
                  "toy SD 1.5-family model for tests", {"text_encoder": 77}, default_resolution=64, tiny=True),
        ModelSpec("sd21-tiny", "unet", (_clip("text_encoder", CLIP_TINY, False),
                                        _unet(dict(UNET_TINY, use_linear_projection=True, attention_head_dim=(2, 4))), _vae(VAE_TINY)),
                  "toy SD 2.1-family model for tests", {"text_encoder": 77}, default_resolution=64, tiny=True),
        ModelSpec("sdxl-tiny", "unet-xl", (_clip("text_encoder", CLIP_TINY, False), _clip("text_encoder_2", clip_tiny_g, True),
                                           _unet(unet_xl_tiny), _vae(VAE_TINY)),
                  "toy SDXL-family model for tests", {"text_encoder": 77, "text_encoder_2": 77}, default_resolution=64, tiny=True),
        ModelSpec("sd3-medium-tiny", "sd3", (_clip("text_encoder", CLIP_TINY, True), _clip("text_encoder_2", clip_tiny_g, True),
                                             _t5("text_encoder_3", T5_TINY),
                                             Component("transformer", "diffusers:SD3Transformer2DModel", sd3_tiny, "denoiser"),
                                             _vae(dict(VAE_TINY, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False))),
                  "toy SD3-family model for tests", {"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256},
                  default_resolution=64, tiny=True),
        ModelSpec("sd3-medium-no-t5-tiny", "sd3", (_clip("text_encoder", CLIP_TINY, True), _clip("text_encoder_2", clip_tiny_g, True),
                                                   Component("transformer", "diffusers:SD3Transformer2DModel", sd3_tiny, "denoiser"),
                                                   _vae(dict(VAE_TINY, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False))),
                  "toy SD3-family model without T5 for tests", {"text_encoder": 77, "text_encoder_2": 77}, t5_zeros_tokens=256,
                  default_resolution=64, tiny=True),
        ModelSpec("pixart-sigma-tiny", "pixart", (_t5("text_encoder", T5_TINY),
                                                  Component("transformer", "diffusers:PixArtTransformer2DModel", pixart_tiny, "denoiser"),
                                                  _vae(VAE_TINY)),
                  "toy PixArt-family model for tests", {"text_encoder": 300}, default_resolution=64, tiny=True),
    ]
    return {s.name: s for s in specs}


MODELS: dict[str, ModelSpec] = _specs()

# Exact parameter counts of the real models' components (computed on the meta device, pinned by a test).
PINNED_PARAMS: dict[str, dict[str, int]] = {
    "sd15": {"text_encoder": 123_060_480, "unet": 859_520_964, "vae": 83_653_863},
    "sd21": {"text_encoder": 340_387_840, "unet": 865_910_724, "vae": 83_653_863},
    "sdxl": {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "unet": 2_567_463_684, "vae": 83_653_863},
    "sd3-medium": {"text_encoder": 123_650_304, "text_encoder_2": 694_659_840, "text_encoder_3": 4_762_310_656,
                   "transformer": 2_028_328_000, "vae": 83_819_683},
    "sd3-medium-no-t5": {"text_encoder": 123_650_304, "text_encoder_2": 694_659_840, "transformer": 2_028_328_000,
                         "vae": 83_819_683},
    "pixart-sigma": {"text_encoder": 4_762_310_656, "transformer": 610_856_096, "vae": 83_653_863},
}

# Sizes as published (model cards, papers), in millions, with the relative precision of the published figure.
PUBLISHED_PARAMS: dict[str, dict[str, tuple[float, float]]] = {
    "sd15": {"unet": (860, 0.005), "text_encoder": (123, 0.005), "vae": (84, 0.01)},  # SD model card; LDM paper
    "sd21": {"unet": (865, 0.005), "text_encoder": (340, 0.01), "vae": (84, 0.01)},  # SD 2 release; OpenCLIP-H text tower, 23 of 24 layers
    "sdxl": {"unet": (2600, 0.02), "text_encoder": (123, 0.005), "text_encoder_2": (695, 0.005), "vae": (84, 0.01)},  # SDXL paper: 2.6B UNet, 817M text encoders
    "sd3-medium": {"transformer": (2000, 0.03), "text_encoder": (124, 0.005), "text_encoder_2": (695, 0.005),
                   "text_encoder_3": (4700, 0.02), "vae": (84, 0.01)},  # SD3 medium model card: 2B MMDiT; T5 v1.1 XXL encoder 4.7B
    "sd3-medium-no-t5": {"transformer": (2000, 0.03), "text_encoder": (124, 0.005), "text_encoder_2": (695, 0.005),
                         "vae": (84, 0.01)},
    "pixart-sigma": {"transformer": (600, 0.02), "text_encoder": (4700, 0.02), "vae": (84, 0.01)},  # PixArt-Sigma paper: 0.6B DiT
}


def model_names(include_tiny: bool = True) -> list[str]:
    return [n for n, s in MODELS.items() if include_tiny or not s.tiny]


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError("--model", name, "a model of the zoo: " + ", ".join(MODELS)) from None


def component_class(cls: str) -> type:
    module, _, attr = cls.partition(":")
    if module == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        return getattr(transformers, attr)
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # its dtype-cast notice is about pretrained fp32 modules: none here
    diffusers.utils.logging.disable_progress_bar()
    return getattr(diffusers, attr)


def build_component(c: Component, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """One component with freshly initialised (random) weights, in eval mode, on `device`.

    On the meta device no memory is allocated: use it to count parameters.
    """
    model_cls = component_class(c.cls)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # created in the target dtype: no full-precision copy (T5-XXL is 19 GB in fp32)
    try:
        with torch.device(device):
            if c.is_transformers:
                module = model_cls(model_cls.config_class(**c.config))  # CLIPTextConfig, T5Config
            else:
                module = model_cls(**c.config)
    finally:
        torch.set_default_dtype(previous)
    module = module.to(dtype=dtype)
    _keep_in_fp32(module, dtype)
    return module.eval()


def _keep_in_fp32(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Upcast the parameters a model class keeps in fp32 (T5's `wo` in fp16), as `from_pretrained` does,
    so a random-weight model is the model a real pipeline runs."""
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or []) if dtype == torch.float16 else set()
    if dtype in (torch.float16, torch.bfloat16):
        keep |= set(getattr(module, "_keep_in_fp32_modules_strict", None) or [])
    if not keep:
        return
    for name, param in module.named_parameters():
        if keep & set(name.split(".")):
            param.data = param.data.float()


def build(spec: ModelSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
          weights: Path | None = None) -> dict[str, torch.nn.Module]:
    """All components of a model: random weights from the configuration, or loaded from `weights`,
    a local directory in diffusers' pipeline layout (one sub-directory per component name)."""
    if weights is None:
        return {c.name: build_component(c, device, dtype) for c in spec.components}
    out = {}
    for c in spec.components:
        sub = Path(weights) / c.name
        if not (sub / "config.json").is_file():
            raise ConfigError("--weights", str(weights), f"a diffusers pipeline directory with {c.name}/config.json (model {spec.name})")
        out[c.name] = component_class(c.cls).from_pretrained(sub, local_files_only=True, torch_dtype=dtype).to(device).eval()
    return out


def param_counts(spec: ModelSpec) -> dict[str, int]:
    """Parameters per component, counted on the meta device (no memory used)."""
    return {c.name: sum(p.numel() for p in build_component(c, "meta").parameters()) for c in spec.components}


def config_hash(spec: ModelSpec) -> str:
    """A short hash of the model's configuration (goes into profiles' provenance)."""
    import hashlib

    text = json.dumps([(c.name, c.cls, c.config) for c in spec.components], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
