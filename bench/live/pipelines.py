"""A zoo model as a real diffusers text-to-image pipeline, fed token ids instead of prompts (no tokenizer).

The model's components come from `profiles.zoo` (random weights, seeded per model so every server builds the
same network). The pipeline is the diffusers class of the model's family (StableDiffusionPipeline,
StableDiffusionXLPipeline, StableDiffusion3Pipeline, PixArtSigmaPipeline) with its family's noise scheduler;
its tokenizers are absent: a request's prompt is a row of token ids drawn from the request's seed, which the
text encoders turn into the embeddings the pipeline takes (`prompt_embeds`, pooled embeddings where the family
has them), as its own `encode_prompt` would. Classifier-free guidance is on (the family's default scale), so
the denoiser sees 2 x batch latents and the unconditional prompt (pad tokens) is encoded too, as the profiler
assumes (profiles/profiler.py).

`run` times the request's parts on the caller's clock: text encoding, the denoising loop (pipeline set-up
included, from the pipeline's per-step callback) and the VAE decode with post-processing. The image is
float32 in [0, 1], shape (batch, resolution, resolution, 3); the same request seed gives the same image on any
server with the same device type and weights (one thread: no reduction-order nondeterminism).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from profiles.zoo import ModelSpec, build, component_class, get_model

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def weights_seed(model: str) -> int:
    """The torch seed that builds `model`'s random weights: the same on every server (a function of the name)."""
    return zlib.crc32(model.encode("utf-8"))


def build_components(spec: ModelSpec, device: str = "cpu", dtype: str = "float32") -> dict[str, torch.nn.Module]:
    """The model's components with the weights every server gets (seeded by the model's name)."""
    torch.manual_seed(weights_seed(spec.name))
    return build(spec, device, DTYPES[dtype])


def save_components(components: dict[str, torch.nn.Module], directory: Path) -> None:
    """A local copy of the weights in diffusers' layout (one sub-directory per component), as a server keeps them."""
    for name, module in components.items():
        module.save_pretrained(Path(directory) / name, safe_serialization=True)


def load_components(spec: ModelSpec, directory: Path, device: str = "cpu", dtype: str = "float32") -> dict[str, torch.nn.Module]:
    """A cold start: every component read back from `directory` and moved to the device."""
    out = {}
    for c in spec.components:
        module = component_class(c.cls).from_pretrained(Path(directory) / c.name, local_files_only=True, torch_dtype=DTYPES[dtype])
        out[c.name] = module.to(device).eval()
    return out


@dataclass(frozen=True)
class Request:
    """What a server is asked to generate."""

    model: str
    resolution: int
    batch: int
    steps: int
    seed: int


@dataclass
class Generated:
    """A generated request: the image and the seconds each part took on the server."""

    image: np.ndarray  # (batch, resolution, resolution, 3) float32
    text_s: float
    denoise_s: float  # the denoising loop, pipeline set-up included
    vae_s: float  # decode and post-processing
    first_step_s: float = 0.0  # from the end of text encoding to the end of the first step (the pipeline's set-up and one step)

    @property
    def digest(self) -> str:
        return image_digest(self.image)


def image_digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _schedulers(kind: str):
    import diffusers

    if kind == "unet":  # Stable Diffusion 1.x/2.x checkpoints' scheduler configuration
        return diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                       set_alpha_to_one=False, steps_offset=1)
    if kind == "unet-xl":
        return diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if kind == "sd3":
        return diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    if kind == "pixart":
        return diffusers.DPMSolverMultistepScheduler()
    raise ValueError(f"unknown model kind {kind!r}")


class Pipeline:
    """One zoo model ready to serve: its components wrapped in the family's diffusers pipeline."""

    def __init__(self, spec: ModelSpec, components: dict[str, torch.nn.Module], device: str = "cpu"):
        import diffusers

        diffusers.utils.logging.set_verbosity_error()
        self.spec = spec
        self.components = components
        self.device = torch.device(device)
        c, scheduler = components, _schedulers(spec.kind)
        if spec.kind == "unet":
            pipe = diffusers.StableDiffusionPipeline(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=None, unet=c["unet"],
                                                     scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                                     requires_safety_checker=False)
        elif spec.kind == "unet-xl":
            pipe = diffusers.StableDiffusionXLPipeline(vae=c["vae"], text_encoder=c["text_encoder"], text_encoder_2=c["text_encoder_2"],
                                                       tokenizer=None, tokenizer_2=None, unet=c["unet"], scheduler=scheduler)
        elif spec.kind == "sd3":
            vae_config = c["vae"].config
            if getattr(vae_config, "shift_factor", None) is None:  # SD3's VAE latents are shifted and scaled before decoding;
                # the values of the published SD3-medium vae/config.json (the zoo's VAE_SD3 leaves them out)
                c["vae"].register_to_config(shift_factor=0.0609, scaling_factor=1.5305)
            pipe = diffusers.StableDiffusion3Pipeline(transformer=c["transformer"], scheduler=scheduler, vae=c["vae"],
                                                      text_encoder=c["text_encoder"], tokenizer=None, text_encoder_2=c["text_encoder_2"],
                                                      tokenizer_2=None, text_encoder_3=c.get("text_encoder_3"), tokenizer_3=None)
        elif spec.kind == "pixart":
            pipe = diffusers.PixArtSigmaPipeline(tokenizer=None, text_encoder=c["text_encoder"], vae=c["vae"], transformer=c["transformer"],
                                                 scheduler=scheduler)
        else:
            raise ValueError(f"unknown model kind {spec.kind!r}")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe

    @property
    def weights_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for m in self.components.values() for t in [*m.parameters(), *m.buffers()])

    # ---- text: token ids -> the embeddings the pipeline takes -------------------------------------------
    def _ids(self, name: str, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        encoder = self.components[name]
        length = self.spec.text_tokens[name]
        if generator is None:  # the unconditional prompt: padding only
            pad = int(getattr(encoder.config, "pad_token_id", None) or 0)
            return torch.full((batch, length), pad, dtype=torch.long, device=self.device)
        return torch.randint(3, int(encoder.config.vocab_size), (batch, length), generator=generator).to(self.device)

    def _clip(self, name: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.components[name](ids, output_hidden_states=True)
        pooled = getattr(out, "text_embeds", None)
        return out.hidden_states[-2], pooled

    def encode(self, batch: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The embeddings of one prompt per image (`generator` None: the unconditional, empty prompt)."""
        kind = self.spec.kind
        if kind == "unet":
            return {"prompt_embeds": self.components["text_encoder"](self._ids("text_encoder", batch, generator))[0]}
        if kind == "unet-xl":
            h1, _ = self._clip("text_encoder", self._ids("text_encoder", batch, generator))
            h2, pooled = self._clip("text_encoder_2", self._ids("text_encoder_2", batch, generator))
            return {"prompt_embeds": torch.cat([h1, h2], dim=-1), "pooled_prompt_embeds": pooled}
        if kind == "sd3":
            h1, p1 = self._clip("text_encoder", self._ids("text_encoder", batch, generator))
            h2, p2 = self._clip("text_encoder_2", self._ids("text_encoder_2", batch, generator))
            joint = int(self.components["transformer"].config.joint_attention_dim)
            if "text_encoder_3" in self.components:
                t5 = self.components["text_encoder_3"](self._ids("text_encoder_3", batch, generator))[0]
            else:  # the pipeline without T5 feeds zeros in its place
                t5 = torch.zeros(batch, self.spec.t5_zeros_tokens, joint, device=self.device, dtype=h1.dtype)
            clip = torch.cat([h1, h2], dim=-1)
            clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
            return {"prompt_embeds": torch.cat([clip, t5], dim=-2), "pooled_prompt_embeds": torch.cat([p1, p2], dim=-1)}
        if kind == "pixart":
            ids = self._ids("text_encoder", batch, generator)
            mask = torch.ones_like(ids)
            return {"prompt_embeds": self.components["text_encoder"](ids, attention_mask=mask)[0], "prompt_attention_mask": mask}
        raise ValueError(f"unknown model kind {kind!r}")

    # ---- one request --------------------------------------------------------------------------------------
    def run(self, request: Request) -> Generated:
        """Generate `request` (one thread of the caller's), timing its parts."""
        generator = torch.Generator().manual_seed(int(request.seed))
        with torch.inference_mode():
            t0 = time.perf_counter()
            cond = self.encode(request.batch, generator)
            uncond = self.encode(request.batch, None)
            _sync(self.device)
            t1 = time.perf_counter()
            marks: list[float] = []

            def on_step(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
                _sync(self.device)
                marks.append(time.perf_counter())
                return kwargs

            kwargs = {**cond, **{"negative_" + k: v for k, v in uncond.items()}}
            if self.spec.kind == "pixart":  # its pipeline has the older per-step callback
                kwargs.update(negative_prompt=None, use_resolution_binning=False, callback_steps=1,
                              callback=lambda i, t, latents: on_step(None, i, t, {}))
            else:
                kwargs["callback_on_step_end"] = on_step
            out = self.pipe(**kwargs, num_inference_steps=int(request.steps), height=int(request.resolution),
                            width=int(request.resolution), generator=generator, output_type="np")
            image = np.asarray(out.images, dtype=np.float32)
            t2 = time.perf_counter()
        last = marks[-1] if marks else t1
        return Generated(image=image, text_s=t1 - t0, denoise_s=last - t1, vae_s=t2 - last, first_step_s=(marks[0] - t1) if marks else 0.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_pipeline(model: str, device: str = "cpu", dtype: str = "float32") -> Pipeline:
    """A pipeline of `model` with its seeded random weights, built in memory (tests, the check of a scenario)."""
    spec = get_model(model)
    return Pipeline(spec, build_components(spec, device, dtype), device)
