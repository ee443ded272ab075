"""Sampler and scheduler names: ComfyUI's own, and the names other backends use for them."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_SAMPLERS",
    "DEFAULT_SCHEDULERS",
    "normalize_sampler",
    "resolve_sampler",
]

#: ``KSampler``'s ``sampler_name`` choices in ComfyUI 0.3.64 (from ``/object_info``); used
#: when the server's own list cannot be read.
DEFAULT_SAMPLERS: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
)  # fmt: skip

#: ``KSampler``'s ``scheduler`` choices in ComfyUI 0.3.64.
DEFAULT_SCHEDULERS: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)  # fmt: skip

# Names used by InvokeAI, AUTOMATIC1111 and diffusers for ComfyUI's samplers, after
# normalize_sampler() (lower case, "_" for spaces, "pp" for "++").
_ALIASES = {
    "euler_a": "euler_ancestral",
    "k_euler_a": "euler_ancestral",
    "k_euler_ancestral": "euler_ancestral",
    "k_euler": "euler",
    "k_heun": "heun",
    "k_lms": "lms",
    "k_dpm_2": "dpm_2",
    "k_dpm_2_a": "dpm_2_ancestral",
    "k_dpm_2_ancestral": "dpm_2_ancestral",
    "kdpm_2": "dpm_2",
    "kdpm_2_a": "dpm_2_ancestral",
    "dpm2": "dpm_2",
    "dpm2_a": "dpm_2_ancestral",
    "dpm_2_a": "dpm_2_ancestral",
    "dpmpp_2s_a": "dpmpp_2s_ancestral",
    "unipc": "uni_pc",
}

# Suffixes other backends use to ask for Karras sigmas (``dpmpp_2m_k``, "DPM++ 2M Karras").
_KARRAS_SUFFIXES = ("_karras", "_k")


def normalize_sampler(name: str) -> str:
    """``"DPM++ 2M Karras"`` -> ``"dpmpp_2m_karras"``: lower case, ``_`` separators."""
    text = name.strip().lower().replace("++", "pp").replace("+", "p")
    for sep in (" ", "-", "."):
        text = text.replace(sep, "_")
    while "__" in text:
        text = text.replace("__", "_")
    return text.strip("_")


def resolve_sampler(name: str, valid: Sequence[str] = DEFAULT_SAMPLERS) -> tuple[str, str | None]:
    """Map a sampler name to one of ``valid``; return ``(sampler, scheduler or None)``.

    ComfyUI's own names pass unchanged; other backends' names are translated
    (``euler_a`` is ``euler_ancestral``) and a Karras suffix (``dpmpp_2m_k``,
    ``DPM++ 2M Karras``) also selects the ``karras`` scheduler. Raises :class:`ValueError`
    for a name that matches nothing.
    """
    if name in valid:
        return name, None
    text = normalize_sampler(name)
    if text in valid:
        return text, None
    scheduler: str | None = None
    for suffix in _KARRAS_SUFFIXES:
        if text.endswith(suffix) and text[: -len(suffix)]:
            base = text[: -len(suffix)]
            base = _ALIASES.get(base, base)
            if base in valid:
                text, scheduler = base, "karras"
                break
    else:
        text = _ALIASES.get(text, text)
    if text in valid:
        return text, scheduler
    raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(valid)}")
