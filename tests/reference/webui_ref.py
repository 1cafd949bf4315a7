"""An independent reference of the WebUI's (AUTOMATIC1111 v1.10) image pipeline, for tests.

Written from the WebUI's modules (processing.py, rng.py, rng_philox.py, sd_schedulers.py,
sd_samplers_kdiffusion.py, sd_samplers_cfg_denoiser.py, sd_hijack_clip.py, sd_emphasis.py,
prompt_parser.py) and k-diffusion's sampling.py / external.py, as a plain transcription of
their logic in their own structure (a DiscreteSchedule, a CFGDenoiser with `extra_args`,
k-diffusion samplers drawing `torch.randn_like` through a hijack, an ImageRNG, the CLIP
wrapper's tokenize_line). It shares no code with sdcli's product modules; only the
diffusers components (UNet, VAE, CLIP) of a loaded pipeline are used as the "model".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

# ---------------------------------------------------------------- prompt_parser.parse_prompt_attention

RE_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start_position, multiplier):
        for p in range(start_position, len(res)):
            res[p][1] *= multiplier

    for m in RE_ATTENTION.finditer(text):
        text = m.group(0)
        weight = m.group(1)
        if text.startswith("\\"):
            res.append([text[1:], 1.0])
        elif text == "(":
            round_brackets.append(len(res))
        elif text == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif text == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif text == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            parts = re.split(RE_BREAK, text)
            for i, part in enumerate(parts):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    if len(res) == 0:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


# ---------------------------------------------------------------- sd_hijack_clip + sd_emphasis


@dataclass
class PromptChunk:
    tokens: list = field(default_factory=list)
    multipliers: list = field(default_factory=list)


class CLIPWrapper:
    """FrozenCLIPEmbedderWithCustomWords (SD1) / the OpenCLIP one (SD2, pad 0, no CLIP skip)."""

    def __init__(self, tokenizer, transformer, clip_skip=1, emphasis="Original", comma_padding_backtrack=20):
        self.tokenizer, self.transformer = tokenizer, transformer
        self.chunk_length = 75
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        open_clip = transformer.config.hidden_act == "gelu"
        self.id_pad = tokenizer.pad_token_id if open_clip else self.id_end
        self.clip_skip = 1 if open_clip else clip_skip
        self.emphasis = emphasis
        self.comma_padding_backtrack = comma_padding_backtrack
        self.comma_token = tokenizer.get_vocab().get(",</w>", None)

    def empty_chunk(self):
        chunk = PromptChunk()
        chunk.tokens = [self.id_start] + [self.id_end] * (self.chunk_length + 1)
        chunk.multipliers = [1.0] * (self.chunk_length + 2)
        return chunk

    def tokenize(self, texts):
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def tokenize_line(self, line):
        parsed = parse_prompt_attention(line) if self.emphasis != "None" else [[line, 1.0]]
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def next_chunk(is_last=False):
            nonlocal token_count, last_comma, chunk
            token_count += len(chunk.tokens) if is_last else self.chunk_length
            to_add = self.chunk_length - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (self.comma_padding_backtrack != 0 and len(chunk.tokens) == self.chunk_length
                      and last_comma != -1 and len(chunk.tokens) - last_comma <= self.comma_padding_backtrack):
                    break_location = last_comma + 1
                    reloc_tokens = chunk.tokens[break_location:]
                    reloc_mults = chunk.multipliers[break_location:]
                    chunk.tokens = chunk.tokens[:break_location]
                    chunk.multipliers = chunk.multipliers[:break_location]
                    next_chunk()
                    chunk.tokens = reloc_tokens
                    chunk.multipliers = reloc_mults
                if len(chunk.tokens) == self.chunk_length:
                    next_chunk()
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1
        if chunk.tokens or not chunks:
            next_chunk(is_last=True)
        return chunks, token_count

    def encode_with_transformers(self, tokens):
        outputs = self.transformer(input_ids=tokens, output_hidden_states=True)
        if self.clip_skip > 1:
            z = outputs.hidden_states[-self.clip_skip]
            inner = getattr(self.transformer, "text_model", self.transformer)
            z = inner.final_layer_norm(z)
        else:
            z = outputs.last_hidden_state
        return z

    def process_tokens(self, remade_batch_tokens, batch_multipliers):
        tokens = torch.asarray(remade_batch_tokens)
        if self.id_end != self.id_pad:
            for batch_pos in range(len(remade_batch_tokens)):
                index = remade_batch_tokens[batch_pos].index(self.id_end)
                tokens[batch_pos, index + 1:tokens.shape[1]] = self.id_pad
        z = self.encode_with_transformers(tokens)
        return emphasis_after_transformers(self.emphasis, z, torch.asarray(batch_multipliers))

    @torch.no_grad()
    def __call__(self, texts):
        batch_chunks = [self.tokenize_line(t)[0] for t in texts]
        chunk_count = max(len(x) for x in batch_chunks)
        zs = []
        for i in range(chunk_count):
            batch_chunk = [chunks[i] if i < len(chunks) else self.empty_chunk() for chunks in batch_chunks]
            zs.append(self.process_tokens([x.tokens for x in batch_chunk], [x.multipliers for x in batch_chunk]))
        return torch.hstack(zs)


def emphasis_after_transformers(emphasis, z, multipliers):
    """sd_emphasis: EmphasisOriginal / EmphasisOriginalNoNorm / EmphasisNone."""
    if emphasis == "Original":
        original_mean = z.mean()
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
        new_mean = z.mean()
        z = z * (original_mean / new_mean)
    elif emphasis == "No norm":
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    return z


# ---------------------------------------------------------------- rng.py, rng_philox.py

philox_m = [0xD2511F53, 0xCD9E8D57]
philox_w = [0x9E3779B9, 0xBB67AE85]
two_pow32_inv = np.array([2.3283064e-10], dtype=np.float32)
two_pow32_inv_2pi = np.array([2.3283064e-10 * 6.2831855], dtype=np.float32)


def uint32(x):
    return x.view(np.uint32).reshape(-1, 2).transpose(1, 0)


def philox4_round(counter, key):
    v1 = uint32(counter[0].astype(np.uint64) * philox_m[0])
    v2 = uint32(counter[2].astype(np.uint64) * philox_m[1])
    counter[0] = v2[1] ^ counter[1] ^ key[0]
    counter[1] = v2[0]
    counter[2] = v1[1] ^ counter[3] ^ key[1]
    counter[3] = v1[0]


def philox4_32(counter, key, rounds=10):
    for _ in range(rounds - 1):
        philox4_round(counter, key)
        key[0] = key[0] + philox_w[0]
        key[1] = key[1] + philox_w[1]
    philox4_round(counter, key)
    return counter


def box_muller(x, y):
    u = x * two_pow32_inv + two_pow32_inv / 2
    v = y * two_pow32_inv_2pi + two_pow32_inv_2pi / 2
    s = np.sqrt(-2.0 * np.log(u))
    return (s * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    def __init__(self, seed):
        self.seed = seed
        self.offset = 0

    def randn(self, shape):
        n = 1
        for x in shape:
            n *= x
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        key = np.empty(n, dtype=np.uint64)
        key.fill(self.seed)
        key = uint32(key)
        g = philox4_32(counter, key)
        return box_muller(g[0], g[1]).reshape(shape)


class ImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, source="CPU", ensd=0):
        self.shape, self.seeds, self.subseeds, self.subseed_strength = tuple(shape), seeds, subseeds, subseed_strength
        self.source, self.ensd = source, ensd
        self.generators = [self.create_generator(seed) for seed in seeds]
        self.is_first = True

    def create_generator(self, seed):
        if self.source == "NV":
            return PhiloxGenerator(seed)
        return torch.Generator("cpu").manual_seed(int(seed))

    def randn(self, generator, shape):
        if self.source == "NV":
            return torch.asarray(generator.randn(shape))
        return torch.randn(shape, device="cpu", generator=generator)

    @staticmethod
    def slerp(val, low, high):
        low_norm = low / torch.norm(low, dim=1, keepdim=True)
        high_norm = high / torch.norm(high, dim=1, keepdim=True)
        dot = (low_norm * high_norm).sum(1)
        if dot.mean() > 0.9995:
            return low * val + high * (1 - val)
        omega = torch.acos(dot)
        so = torch.sin(omega)
        res = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low
        return res + (torch.sin(val * omega) / so).unsqueeze(1) * high

    def first(self):
        xs = []
        for i, generator in enumerate(self.generators):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subnoise = self.randn(self.create_generator(self.subseeds[i]), self.shape)
            noise = self.randn(generator, self.shape)
            if subnoise is not None:
                noise = self.slerp(self.subseed_strength, noise, subnoise)
            xs.append(noise)
        if self.ensd:
            self.generators = [self.create_generator(seed + self.ensd) for seed in self.seeds]
        return torch.stack(xs)

    def next(self):
        if self.is_first:
            self.is_first = False
            return self.first()
        return torch.stack([self.randn(g, self.shape) for g in self.generators])


class TorchHijack:
    """k-diffusion's `torch` module with randn_like replaced by the image RNG (sd_samplers_common)."""

    def __init__(self, rng):
        self.rng = rng

    def __getattr__(self, item):
        if item == "randn_like":
            return lambda x: self.rng.next()
        return getattr(torch, item)


# ---------------------------------------------------------------- k-diffusion external: CompVis denoisers


def append_dims(x, target_dims):
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def append_zero(x):
    return torch.cat([x, x.new_zeros([1])])


class CompVisDenoiser:
    """DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser around a diffusers UNet."""

    def __init__(self, unet, alphas_cumprod, v):
        self.unet, self.v = unet, v
        self.alphas_cumprod = alphas_cumprod
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self.sigma_data = 1.0

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def get_sigmas(self, n=None):
        if n is None:
            return append_zero(self.sigmas.flip(0))
        t_max = len(self.sigmas) - 1
        t = torch.linspace(t_max, 0, n)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma):
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = (low - log_sigma) / (low - high)
        w = w.clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t):
        t = t.float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()

    def apply_model(self, x, t, cond):
        if cond.get("c_concat") is not None and self.unet.config.in_channels != x.shape[1]:  # is_sdxl_inpaint
            x = torch.cat([x, cond["c_concat"]], dim=1)
        if "crossattn" in cond:  # SDXL (sgm's OpenAIWrapper: context=crossattn, y=vector)
            added = {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}
            return self.unet(x, t, encoder_hidden_states=cond["crossattn"], added_cond_kwargs=added).sample
        return self.unet(x, t, encoder_hidden_states=cond["c_crossattn"]).sample

    def __call__(self, input, sigma, cond):
        if self.v:
            c_skip = self.sigma_data ** 2 / (sigma ** 2 + self.sigma_data ** 2)
            c_out = -sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2) ** 0.5
            c_in = 1 / (sigma ** 2 + self.sigma_data ** 2) ** 0.5
            c_skip, c_out, c_in = [append_dims(x, input.ndim) for x in (c_skip, c_out, c_in)]
            return self.apply_model(input * c_in, self.sigma_to_t(sigma), cond) * c_out + input * c_skip
        c_out, c_in = -sigma, 1 / (sigma ** 2 + self.sigma_data ** 2) ** 0.5
        c_out, c_in = [append_dims(x, input.ndim) for x in (c_out, c_in)]
        eps = self.apply_model(input * c_in, self.sigma_to_t(sigma), cond)
        return input + eps * c_out


class LCMCompVisDenoiser(CompVisDenoiser):
    """sd_samplers_lcm.LCMCompVisDenoiser: 50 of the 1000 training timesteps (every 20th, from 999),
    integer timesteps, the output always read as eps, then LCM's c_skip/c_out boundary scalings."""

    def __init__(self, unet, alphas_cumprod, v):
        timesteps, original_timesteps = 1000, 50
        self.skip_steps = timesteps // original_timesteps
        valid = torch.zeros((original_timesteps), dtype=torch.float32)
        for x in range(original_timesteps):
            valid[original_timesteps - 1 - x] = alphas_cumprod[timesteps - 1 - x * self.skip_steps]
        super().__init__(unet, valid, v=False)  # DiscreteEpsDDPMDenoiser whatever the model predicts

    def get_sigmas(self, n=None):
        if n is None:
            return append_zero(self.sigmas.flip(0))
        start = self.sigma_to_t(self.sigma_max)
        end = self.sigma_to_t(self.sigma_min)
        t = torch.linspace(start, end, n)
        return append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma, quantize=None):
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, timestep):
        t = torch.clamp(((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0,
                        max=(len(self.sigmas) - 1))
        return super().t_to_sigma(t)

    def get_scaled_out(self, sigma, output, input):
        sigma_data = 0.5
        scaled_timestep = append_dims(self.sigma_to_t(sigma), output.ndim) * 10.0
        c_skip = sigma_data ** 2 / (scaled_timestep ** 2 + sigma_data ** 2)
        c_out = scaled_timestep / (scaled_timestep ** 2 + sigma_data ** 2) ** 0.5
        return c_out * output + c_skip * input

    def __call__(self, input, sigma, cond):
        c_out, c_in = -sigma, 1 / (sigma ** 2 + self.sigma_data ** 2) ** 0.5
        c_out, c_in = [append_dims(x, input.ndim) for x in (c_out, c_in)]
        eps = self.apply_model(input * c_in, self.sigma_to_t(sigma), cond)
        return self.get_scaled_out(sigma, input + eps * c_out, input)


# ---------------------------------------------------------------- sd_samplers_cfg_denoiser


class CompVisTimestepsDenoiser:
    """CompVisTimestepsDenoiser / CompVisTimestepsVDenoiser: eps at integer timesteps."""

    def __init__(self, model_wrap):
        self.wrap = model_wrap
        self.alphas_cumprod = model_wrap.alphas_cumprod

    def __call__(self, input, timesteps, cond):
        out = self.wrap.apply_model(input, timesteps, cond)
        if not self.wrap.v:
            return out
        t = timesteps.to(torch.int)
        return (self.alphas_cumprod[t].sqrt()[:, None, None, None] * out
                + (1 - self.alphas_cumprod[t]).sqrt()[:, None, None, None] * input)


class CFGDenoiser:
    def __init__(self, model, mask=None, init_latent=None, mask_before_denoising=False):
        self.inner_model, self.mask, self.init_latent = model, mask, init_latent
        self.nmask = None if mask is None else 1 - mask
        self.mask_before_denoising = mask_before_denoising
        self.alphas_cumprod = getattr(model, "alphas_cumprod", None)
        self.step = 0
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None

    def combine_denoised(self, x_out, conds_list, uncond, cond_scale):
        denoised_uncond = x_out[-cond_shape(uncond)[0]:]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    refiner = None  # (model, cond, uncond, switch_at): p.refiner_checkpoint_info and what setup_conds gives it
    switched = False

    def apply_refiner(self, sigma):
        """sd_samplers_common.apply_refiner (refiner_switch_by_sample_steps off)."""
        try:
            timestep = torch.argmin(torch.abs(self.inner_model.sigmas - torch.max(sigma)))
        except AttributeError:  # for samplers that don't use sigmas (DDIM) sigma is actually the timestep
            timestep = torch.max(sigma).to(dtype=int)
        completed_ratio = (999 - timestep) / 1000
        if self.refiner is None or completed_ratio < self.refiner[3] or self.switched:
            return False
        self.inner_model = self.refiner[0]  # reload_model_weights + update_inner_model
        self.switched = True
        return True

    def __call__(self, x, sigma, uncond, cond, cond_scale, image_cond=None):
        self.apply_refiner(sigma)
        if self.switched:  # the sampler's extra_args now hold the refiner's conds
            cond, uncond = self.refiner[1], self.refiner[2]
        if self.mask_before_denoising and self.mask is not None:
            x = x * self.nmask + self.init_latent * self.mask
        conds_list, tensor = cond(self.step)  # reconstruct_multicond_batch
        uncond = uncond(self.step)  # reconstruct_cond_batch
        batch_size = len(conds_list)
        repeats = [len(conds_list[i]) for i in range(batch_size)]
        x_in = torch.cat([torch.stack([x[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [x])
        sigma_in = torch.cat([torch.stack([sigma[i] for _ in range(n)]) for i, n in enumerate(repeats)] + [sigma])
        ic_in = None
        if image_cond is not None:
            ic_in = torch.cat([torch.stack([image_cond[i] for _ in range(n)]) for i, n in enumerate(repeats)]
                              + [image_cond])
        if isinstance(uncond, dict):  # SDXL: the conds are dicts, shaped as their crossattn
            def make_condition_dict(c_crossattn, c_concat):
                return {**c_crossattn, "c_concat": c_concat}
        else:
            def make_condition_dict(c_crossattn, c_concat):
                return {"c_crossattn": c_crossattn, "c_concat": c_concat}
        if cond_shape(tensor)[1] == cond_shape(uncond)[1]:
            cond_in = catenate_conds([tensor, uncond])
            x_out = self.inner_model(x_in, sigma_in, cond=make_condition_dict(cond_in, ic_in))
        else:
            x_out = torch.zeros_like(x_in)
            n, u = cond_shape(tensor)[0], cond_shape(uncond)[0]
            part = None if ic_in is None else ic_in[:n]
            x_out[:n] = self.inner_model(x_in[:n], sigma_in[:n], cond=make_condition_dict(tensor, part))
            part = None if ic_in is None else ic_in[-u:]
            x_out[-u:] = self.inner_model(x_in[-u:], sigma_in[-u:], cond=make_condition_dict(uncond, part))
        if self.need_last_noise_uncond:
            self.last_noise_uncond = torch.clone(x_out[-cond_shape(uncond)[0]:])
        denoised = self.combine_denoised(x_out, conds_list, uncond, cond_scale * self.cond_scale_miltiplier)
        if self.mask is not None and not self.mask_before_denoising:
            denoised = denoised * self.nmask + self.init_latent * self.mask
        self.step += 1
        return denoised


# ---------------------------------------------------------------- prompt_parser: schedules, AND

import lark  # noqa: E402

schedule_parser = lark.Lark(r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
""")


def get_learned_conditioning_prompt_schedules(prompts, steps):
    def collect_steps(steps, tree):
        res = [steps]

        class CollectSteps(lark.Visitor):
            def scheduled(self, tree):
                s = tree.children[-2]
                v = float(s)
                v = v * steps if "." in s else v
                tree.children[-2] = min(steps, int(v))
                if tree.children[-2] >= 1:
                    res.append(tree.children[-2])

            def alternate(self, tree):
                res.extend(range(1, steps + 1))

        CollectSteps().visit(tree)
        return sorted(set(res))

    def at_step(step, tree):
        class AtStep(lark.Transformer):
            def scheduled(self, args):
                before, after, _, when, _ = args
                yield before or () if step <= when else after

            def alternate(self, args):
                args = ["" if not arg else arg for arg in args]  # noqa: SIM212
                yield args[(step - 1) % len(args)]

            def start(self, args):
                def flatten(x):
                    if isinstance(x, str):
                        yield x
                    else:
                        for gen in x:
                            yield from flatten(gen)
                return "".join(flatten(args))

            def plain(self, args):
                yield args[0].value

            def __default__(self, data, children, meta):
                yield from children
        return AtStep().transform(tree)

    def get_schedule(prompt):
        try:
            tree = schedule_parser.parse(prompt)
        except lark.exceptions.LarkError:
            return [[steps, prompt]]
        return [[t, at_step(t, tree)] for t in collect_steps(steps, tree)]

    promptdict = {prompt: get_schedule(prompt) for prompt in set(prompts)}
    return [promptdict[prompt] for prompt in prompts]


re_AND = re.compile(r"\bAND\b")
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def get_multicond_prompt_list(prompts):
    res_indexes, prompt_flat_list, prompt_indexes = [], [], {}
    for prompt in prompts:
        subprompts = re_AND.split(prompt)
        indexes = []
        for subprompt in subprompts:
            match = re_weight.search(subprompt)
            text, weight = match.groups() if match is not None else (subprompt, 1.0)
            weight = float(weight) if weight is not None else 1.0
            index = prompt_indexes.get(text)
            if index is None:
                index = len(prompt_flat_list)
                prompt_flat_list.append(text)
                prompt_indexes[text] = index
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes


def get_learned_conditioning(clip, prompts, steps):
    """[[(end_at_step, cond)]] per prompt."""
    res, cache = [], {}
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps)
    for prompt, prompt_schedule in zip(prompts, schedules, strict=True):
        if prompt in cache:
            res.append(cache[prompt])
            continue
        texts = [x[1] for x in prompt_schedule]
        conds = clip(texts)
        cond_schedule = [(end_at, {k: v[i] for k, v in conds.items()} if isinstance(conds, dict) else conds[i])
                         for i, (end_at, _) in enumerate(prompt_schedule)]
        cache[prompt] = cond_schedule
        res.append(cond_schedule)
    return res


def get_multicond_learned_conditioning(clip, prompts, steps):
    res_indexes, prompt_flat_list, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(clip, prompt_flat_list, steps)
    return [[(learned[i], weight) for i, weight in indexes] for indexes in res_indexes]


def reconstruct_cond_batch(c, current_step):
    param = c[0][0][1]
    is_dict = isinstance(param, dict)
    if is_dict:
        res = {k: torch.zeros((len(c),) + v.shape, dtype=v.dtype) for k, v in param.items()}
    else:
        res = torch.zeros((len(c),) + param.shape, dtype=param.dtype)
    for i, cond_schedule in enumerate(c):
        target_index = 0
        for current, entry in enumerate(cond_schedule):
            if current_step <= entry[0]:
                target_index = current
                break
        if is_dict:
            for k, v in cond_schedule[target_index][1].items():
                res[k][i] = v
        else:
            res[i] = cond_schedule[target_index][1]
    return res


def cond_shape(cond):
    """DictWithShape: a dict cond has its crossattn's shape."""
    return cond["crossattn"].shape if isinstance(cond, dict) else cond.shape


def catenate_conds(conds):
    if not isinstance(conds[0], dict):
        return torch.cat(conds)
    return {key: torch.cat([x[key] for x in conds]) for key in conds[0]}


def stack_conds(tensors):
    token_count = max(x.shape[0] for x in tensors)
    for i in range(len(tensors)):
        if tensors[i].shape[0] != token_count:
            last_vector = tensors[i][-1:]
            last_vector_repeated = last_vector.repeat([token_count - tensors[i].shape[0], 1])
            tensors[i] = torch.vstack([tensors[i], last_vector_repeated])
    return torch.stack(tensors)


def reconstruct_multicond_batch(c, current_step):
    param = c[0][0][0][0][1]
    tensors, conds_list = [], []
    for composable_prompts in c:
        conds_for_batch = []
        for composable_prompt in composable_prompts:
            target_index = 0
            for current, entry in enumerate(composable_prompt[0]):
                if current_step <= entry[0]:
                    target_index = current
                    break
            conds_for_batch.append((len(tensors), composable_prompt[1]))
            tensors.append(composable_prompt[0][target_index][1])
        conds_list.append(conds_for_batch)
    if isinstance(tensors[0], dict):
        return conds_list, {k: stack_conds([x[k] for x in tensors]) for k in tensors[0]}
    return conds_list, stack_conds(tensors).to(dtype=param.dtype)


# ---------------------------------------------------------------- masking.fill


def masking_fill(image, mask):
    from PIL import Image, ImageFilter, ImageOps

    image_mod = Image.new("RGBA", (image.width, image.height))
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    image_masked = image_masked.convert("RGBa")
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")
