"""Runs one scheduled step on the model: builds the flat batch, owns the KV cache, samples.

The flat batch puts every prefill chunk first (one contiguous run per sequence) and then one
token per decoding sequence; ``AttentionMetadata`` tells each attention layer where the tokens'
K/V go and which cache slots form each sequence's context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmos.engine.config import EngineConfig
from llmos.engine.cuda_graphs import DecodeGraphs
from llmos.engine.outputs import ModelRunnerOutput, ScheduledRequest, SchedulerOutput, TokenLogprob
from llmos.engine.request import Request
from llmos.engine.speculative import accept
from llmos.engine.structured_output import GrammarMatcher, allowed_token_mask
from llmos.layers import decode_kernels
from llmos.layers.attention import AttentionMetadata, DecodeGroup, PagedAttention, PrefillChunk
from llmos.layers.linear import Linear, bucket_rows
from llmos.layers.sampler import Penalty, SamplingBatch, sample

logger = logging.getLogger(__name__)

# Decoding sequences are sorted by context length and attended in groups of this many, so each
# group gathers and attends little padding; fewer, larger groups mean fewer kernel launches.
DECODE_GROUP_SIZE = 8
# The native decode kernel (llmos.layers.decode_kernels) reads each row's own blocks and pads nothing: one
# call per layer for every decoding sequence.
NATIVE_DECODE_GROUP_SIZE = 1 << 30
# Prompt logprobs run the LM head over this many prompt positions at a time, which bounds the
# [rows, vocab] float32 logits (about 50 MB for a 49k vocabulary).
PROMPT_LOGPROBS_ROWS = 256


class ModelRunner:
    def __init__(self, model: nn.Module, config: EngineConfig):
        self.model: Any = model.eval()  # a native model or the fallback: the CausalLM interface
        self.config = config
        if getattr(model, "quantization", None) != config.quantization:
            raise ValueError(
                f"the engine is configured for quantization={config.quantization!r} but the model was "
                f"loaded with {getattr(model, 'quantization', None)!r}: pass the same to load_model"
            )
        self.device = config.device
        self.block_size = config.block_size
        self.bytes_per_block = self._bytes_per_block()  # K and V of one block, all layers
        self.num_blocks = config.num_blocks or self._default_num_blocks()
        self.scratch_block = self.num_blocks  # one more block, owned by no sequence (graph padding)
        self._allocate_kv_cache()
        self.graphs: DecodeGraphs | None = None
        if config.cuda_graphs and self.device.type == "cuda" and self.layers:
            self.graphs = self.decode_graphs(capture=True)

    def decode_graphs(self, capture: bool) -> DecodeGraphs:
        """Graph replay for this runner's decode-only steps (``engine.cuda_graphs``); ``capture=False``
        runs the same padded path eagerly."""
        config = self.config
        rows = config.max_num_seqs
        if config.num_speculative_tokens:
            rows = max(rows, config.speculative_max_num_seqs * (config.num_speculative_tokens + 1))
        return DecodeGraphs(
            self.model,
            self.device,
            self.block_size,
            self.scratch_block,
            max_rows=min(rows, config.max_num_batched_tokens),
            max_blocks=-(-config.max_model_len // self.block_size),
            capture=capture,
        )

    def shape_warmup(self) -> Iterator[int]:
        """Each bf16 CPU projection once at every row bucket a step can bring (``layers.linear``),
        one call per ``next()``, yielding the rows; the engine runs it while idle.

        oneDNN builds and keeps a kernel for each new input shape (~0.4 MB each; ~180 MiB for
        SmolLM2's four projection shapes at 64 buckets up to 1,024 rows). Built here, that memory is
        there right after load, where a soak or the memory budget sees it, instead of growing
        over the first hours of serving, and the build time is off the requests' path. Projection
        shapes repeat across layers, so one module of each shape is enough; so is one causal prefill
        attention per head layout at each bucket length (``layers.attention`` pads prefills to
        them; its brgemm kernels are cached per thread, this one); the logits run at the buckets up
        to ``max_num_seqs`` rows. int8 weights and other dtypes/devices have nothing to warm.
        """
        config = self.config
        if not (config.warm_shapes and self.device.type == "cpu" and config.dtype == torch.bfloat16):
            return
        head = getattr(self.model, "lm_head", None)
        layers: dict[tuple[int, int, bool, bool], Linear] = {}
        for module in self.model.modules():
            if isinstance(module, Linear) and module is not head and module.int8 is None:
                key = (
                    module.in_features,
                    module.out_features,
                    module.packed is not None,
                    module.bias is not None,
                )
                layers.setdefault(key, module)
        if not layers:  # the transformers fallback: its own layers
            return
        attentions = {
            (a.num_heads, a.num_kv_heads, a.head_dim): a
            for a in self.model.modules()
            if isinstance(a, PagedAttention) and a.sliding_window <= 0
        }
        for rows in sorted({bucket_rows(n) for n in range(1, config.max_num_batched_tokens + 1)}):
            for layer in layers.values():
                with torch.inference_mode():
                    layer(torch.zeros(rows, layer.in_features, dtype=config.dtype))
                yield rows
            for heads, kv_heads, head_dim in attentions:  # a first prefill of ``rows`` tokens
                q = torch.zeros(1, heads, rows, head_dim, dtype=config.dtype)
                kv = torch.zeros(1, kv_heads, rows, head_dim, dtype=config.dtype)
                with torch.inference_mode():
                    F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=heads != kv_heads)
                yield rows
        embed = getattr(getattr(self.model, "model", None), "embed_tokens", None)
        if config.quantization is None and isinstance(embed, nn.Embedding):
            hidden = embed.embedding_dim
            for rows in sorted({bucket_rows(n) for n in range(1, config.max_num_seqs + 1)}):
                with torch.inference_mode():
                    self.model.compute_logits(torch.zeros(rows, hidden, dtype=config.dtype))
                yield rows

    def _bytes_per_block(self) -> int:
        m = self.model
        itemsize = torch.empty((), dtype=self.config.dtype).element_size()
        return 2 * m.num_layers * self.block_size * m.num_kv_heads * m.head_dim * itemsize

    def _default_num_blocks(self) -> int:
        """Enough blocks for max_num_seqs full-length sequences, within kv_cache_bytes."""
        per_sequence = -(-self.config.max_model_len // self.block_size)
        wanted = self.config.max_num_seqs * per_sequence + 1
        per_block = self.bytes_per_block
        affordable = self.config.kv_cache_bytes // per_block if per_block else wanted
        return max(min(wanted, affordable), per_sequence + 1)

    def _allocate_kv_cache(self) -> None:
        num_slots = (self.num_blocks + 1) * self.block_size  # the scratch block last
        self.layers = [m for m in self.model.modules() if isinstance(m, PagedAttention)]
        # Blocks are zeroed on first use (see _zero_fresh_blocks); until then their pages stay
        # uncommitted, so the cache costs memory only as it fills.
        self.is_fresh = [True] * self.num_blocks
        for layer in self.layers:
            shape = (layer.num_kv_heads, num_slots, layer.head_dim)
            # torch.empty: pages are only committed when first written.
            layer.k_cache = torch.empty(shape, dtype=self.config.dtype, device=self.device)
            layer.v_cache = torch.empty(shape, dtype=self.config.dtype, device=self.device)
        # decode on the native kernel where it runs for every layer (no gather, so one group)
        native = all(
            decode_kernels.supports(layer.k_cache, layer.num_heads, layer.num_kv_heads, layer.head_dim)
            for layer in self.layers
        )
        for layer in self.layers:
            layer.native_decode = native
        self.native_decode = native and bool(self.layers)
        # the per-layer glue (norms, rotary) in single native calls too, where the library runs
        fused = self.device.type == "cpu" and decode_kernels.available()
        for module in self.model.modules():
            if hasattr(module, "native_kernels"):
                module.native_kernels = fused
        self.decode_group_size = NATIVE_DECODE_GROUP_SIZE if native else DECODE_GROUP_SIZE
        # decode padding points into block 0, graph padding into the scratch block (engine.cuda_graphs):
        # keep both finite from the start
        scratch = self.scratch_block * self.block_size
        for layer in self.layers:
            for cache in (layer.k_cache, layer.v_cache):
                cache[:, : self.block_size] = 0
                cache[:, scratch:] = 0
        self.is_fresh[0] = False
        logger.info(
            "KV cache: %d blocks x %d tokens (%.0f MiB)",
            self.num_blocks,
            self.block_size,
            self.num_blocks * self.bytes_per_block / 2**20,
        )

    def kv_cache_committed_bytes(self, num_touched_blocks: int) -> int:
        """About how much of the KV cache the OS has committed once blocks ``0..num_touched_blocks-1``
        were used (block 0 is written at allocation). Each layer's cache is one ``[heads, slots,
        head_dim]`` tensor, so the touched slots are one contiguous run per head: exact up to
        rounding each run to a page."""
        return max(1, num_touched_blocks) * self.bytes_per_block

    def _zero_fresh_blocks(self, sched: SchedulerOutput) -> None:
        """Zero blocks on their first use. Attention reads whole blocks (and padding) under a mask,
        and a masked 0 × NaN from never-written memory would still poison the output. The native
        decode kernel reads only written slots (and prefill only its context's), so it skips this."""
        if self.native_decode:
            return
        fresh: list[int] = []
        for s in sched.scheduled:
            table = s.request.block_table
            for block_id in table if s.num_new_tokens > 1 else table[-1:]:
                if self.is_fresh[block_id]:
                    self.is_fresh[block_id] = False
                    fresh.append(block_id)
        if not fresh:
            return
        ids = torch.tensor(fresh, device=self.device)
        for layer in self.layers:
            for cache in (layer.k_cache, layer.v_cache):
                cache.view(cache.shape[0], -1, self.block_size, cache.shape[-1])[:, ids] = 0

    def _decode_group(self, group: list[ScheduledRequest], start: int) -> DecodeGroup:
        context_lens = [s.request.num_computed_tokens + 1 for s in group]
        max_blocks = -(-max(context_lens) // self.block_size)
        tables = [s.request.block_table[:max_blocks] for s in group]
        padded = [table + [0] * (max_blocks - len(table)) for table in tables]
        return DecodeGroup(
            start=start,
            block_tables=torch.tensor(padded, dtype=torch.long, device=self.device),
            context_lens=torch.tensor(context_lens, device=self.device),
            block_size=self.block_size,
        )

    def _verify_group(self, s: ScheduledRequest, start: int) -> DecodeGroup:
        """Speculative decoding: row ``i`` is the sequence with ``i`` drafts appended, so each row
        attends exactly like a plain decode of that sequence would (the drafts' K/V are written
        before the layer attends; each row's context length hides the later ones)."""
        first = s.request.num_computed_tokens + 1
        context_lens = list(range(first, first + s.num_new_tokens))
        max_blocks = -(-context_lens[-1] // self.block_size)
        table = s.request.block_table[:max_blocks]
        return DecodeGroup(
            start=start,
            block_tables=torch.tensor([table] * s.num_new_tokens, dtype=torch.long, device=self.device),
            context_lens=torch.tensor(context_lens, device=self.device),
            block_size=self.block_size,
        )

    def _slot(self, block_table: list[int], position: int) -> int:
        """The cache slot of the token at ``position`` of a sequence with ``block_table``."""
        return block_table[position // self.block_size] * self.block_size + position % self.block_size

    def _slots_at(self, requests: list[Request]) -> Tensor:
        """The cache slot of each request's next token (at position num_computed_tokens)."""
        return torch.tensor([self._slot(r.block_table, r.num_computed_tokens) for r in requests])

    def _slots(self, block_table: list[int], start: int, end: int) -> Tensor:
        positions = torch.arange(start, end)
        table = torch.tensor(block_table, dtype=torch.long)
        return table[positions // self.block_size] * self.block_size + positions % self.block_size

    def prepare(
        self, sched: SchedulerOutput
    ) -> tuple[Tensor, Tensor, AttentionMetadata, list[ScheduledRequest]]:
        """Flat input ids, positions, attention metadata, and the items in flat-batch order."""
        prefills = [s for s in sched.scheduled if s.is_prefill]
        decodes = [s for s in sched.scheduled if s.num_new_tokens == 1]
        verifies = [s for s in sched.scheduled if s.draft_token_ids]
        input_ids: list[int] = []
        positions: list[Tensor] = []
        slot_mapping: list[Tensor] = []
        chunks: list[PrefillChunk] = []
        for s in prefills:
            req, start = s.request, s.request.num_computed_tokens
            end = start + s.num_new_tokens
            input_ids.extend(req.all_token_ids[start:end])
            positions.append(torch.arange(start, end))
            slots = self._slots(req.block_table, 0, end)
            slot_mapping.append(slots[start:])
            n = len(input_ids)
            chunks.append(
                PrefillChunk(n - s.num_new_tokens, n, end, slots.to(self.device) if start else None)
            )
        num_prefill_tokens = len(input_ids)
        meta = AttentionMetadata(torch.empty(0), chunks, num_prefill_tokens, block_size=self.block_size)
        if decodes:
            decodes.sort(key=lambda s: s.request.num_computed_tokens)
            for i in range(0, len(decodes), self.decode_group_size):
                group = decodes[i : i + self.decode_group_size]
                meta.decodes.append(self._decode_group(group, len(input_ids)))
                input_ids.extend(s.request.all_token_ids[s.request.num_computed_tokens] for s in group)
                positions.append(torch.tensor([s.request.num_computed_tokens for s in group]))
                slot_mapping.append(self._slots_at([s.request for s in group]))
        for s in verifies:  # the next token and its drafts: one decode row each, in one group
            req, start = s.request, s.request.num_computed_tokens
            end = start + s.num_new_tokens
            meta.decodes.append(self._verify_group(s, len(input_ids)))
            input_ids.append(req.all_token_ids[start])
            input_ids.extend(s.draft_token_ids)
            positions.append(torch.arange(start, end))
            slot_mapping.append(self._slots(req.block_table, start, end))
        meta.slot_mapping = torch.cat(slot_mapping).to(self.device)
        ids = torch.tensor(input_ids, dtype=torch.long, device=self.device)
        return ids, torch.cat(positions).to(self.device), meta, prefills + decodes + verifies

    def _decode_rows(self, sched: SchedulerOutput) -> tuple[list[list[int]], int] | None:
        """A step with no prefill as ``engine.cuda_graphs`` rows (in scheduled order) and the block
        table width they need; None when the step has a prefill chunk."""
        bs = self.block_size
        items = []
        for s in sched.scheduled:
            if s.is_prefill:
                return None
            req, start = s.request, s.request.num_computed_tokens
            items.append((req, start, [req.all_token_ids[start], *s.draft_token_ids]))
        if not items:
            return None
        num_blocks = max(-(-(start + len(tokens)) // bs) for _, start, tokens in items)
        rows: list[list[int]] = []
        for req, start, tokens in items:
            table = req.block_table[:num_blocks]
            table = table + [self.scratch_block] * (num_blocks - len(table))
            for i, token in enumerate(tokens):
                pos = start + i
                rows.append([token, pos, self._slot(req.block_table, pos), pos + 1, *table])
        return rows, num_blocks

    @torch.inference_mode()
    def execute(self, sched: SchedulerOutput) -> ModelRunnerOutput:
        self._zero_fresh_blocks(sched)
        hidden = None
        graphs = self.graphs
        if graphs is not None and not graphs.disabled and (decode := self._decode_rows(sched)) is not None:
            hidden = graphs.run(*decode)
            ordered = sched.scheduled
        if hidden is None:
            input_ids, positions, meta, ordered = self.prepare(sched)
            hidden = self.model(input_ids, positions, meta)
        out = ModelRunnerOutput()
        rows: list[int] = []
        sampling: list[ScheduledRequest] = []
        offset = 0
        for s in ordered:
            if s.request.needs_prompt_logprobs:
                out.prompt_logprobs[s.request.request_id] = self._prompt_logprobs(hidden, offset, s)
            offset += s.num_new_tokens
            if s.draft_token_ids:  # every row: the pick after the next token and after each draft
                rows.extend(range(offset - s.num_new_tokens, offset))
                sampling.extend([s] * s.num_new_tokens)
            elif s.is_last_chunk:
                rows.append(offset - 1)
                sampling.append(s)
        if not sampling:
            return out
        logits = self.model.compute_logits(hidden[torch.tensor(rows, device=self.device)])
        batch = self._sampling_batch(sampling)
        guided = [(i, s.request.matcher) for i, s in enumerate(sampling) if s.request.matcher is not None]
        if guided:
            matchers: list[GrammarMatcher] = [m for _, m in guided]
            batch.allowed_tokens, errors = allowed_token_mask(matchers, logits.shape[-1], logits.device)
            batch.guided_rows = [i for i, _ in guided]
            for (i, _), error in zip(guided, errors):
                if error is not None:
                    out.errors[sampling[i].request.request_id] = error
        result = sample(logits, batch)
        for i, s in enumerate(sampling):
            request_id = s.request.request_id
            if request_id in out.errors or request_id in out.sampled_token_ids:
                continue
            if s.draft_token_ids:
                picks = result.token_ids[i : i + s.num_new_tokens]
                out.sampled_token_ids[request_id], *out.accepted_token_ids[request_id] = accept(
                    s.draft_token_ids, picks
                )
                continue
            token_id = result.token_ids[i]
            out.sampled_token_ids[request_id] = token_id
            n = s.request.params.logprobs
            if n is not None and result.logprobs is not None:
                top = []
                if n and result.top_token_ids is not None and result.top_logprobs is not None:
                    top = list(zip(result.top_token_ids[i, :n].tolist(), result.top_logprobs[i, :n].tolist()))
                out.logprobs[request_id] = TokenLogprob(token_id, float(result.logprobs[i]), top)
        return out

    def _prompt_logprobs(self, hidden: Tensor, offset: int, s: ScheduledRequest) -> list[TokenLogprob]:
        """The prompt logprobs this chunk adds: the logits at position p score prompt token p + 1.

        ``offset`` is where the chunk's rows start in ``hidden``. Positions whose entries exist
        already (computed before a preemption) are skipped.
        """
        req, start = s.request, s.request.num_computed_tokens
        first = max(start, len(req.prompt_logprobs) - 1)
        end = min(start + s.num_new_tokens, req.num_prompt_tokens - 1)
        num_top = req.params.prompt_logprobs or 0
        entries: list[TokenLogprob] = []
        for lo in range(first, end, PROMPT_LOGPROBS_ROWS):
            hi = min(lo + PROMPT_LOGPROBS_ROWS, end)
            logits = self.model.compute_logits(hidden[offset + lo - start : offset + hi - start])
            logprobs = torch.log_softmax(logits, dim=-1)
            targets = req.prompt_token_ids[lo + 1 : hi + 1]
            chosen = logprobs.gather(-1, torch.tensor(targets, device=logprobs.device)[:, None])[:, 0]
            top_ids: list[list[int]] = [[] for _ in targets]
            top_values: list[list[float]] = [[] for _ in targets]
            if num_top:
                values, ids = logprobs.topk(num_top, dim=-1)
                top_ids, top_values = ids.tolist(), values.tolist()
            entries += [
                TokenLogprob(t, lp, list(zip(i, v)))
                for t, lp, i, v in zip(targets, chosen.tolist(), top_ids, top_values)
            ]
        return entries

    @staticmethod
    def _sampling_batch(items: list[ScheduledRequest]) -> SamplingBatch:
        params = [s.request.params for s in items]
        penalties = [
            Penalty(
                row,
                s.request.prompt_token_ids,
                s.request.output_token_ids,
                p.repetition_penalty,
                p.presence_penalty,
                p.frequency_penalty,
            )
            for row, (s, p) in enumerate(zip(items, params))
            if p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty
        ]
        return SamplingBatch(
            temperatures=[p.temperature for p in params],
            top_ps=[p.top_p for p in params],
            top_ks=[p.top_k for p in params],
            min_ps=[p.min_p for p in params],
            generators=[s.request.generator for s in items],
            num_logprobs=[p.logprobs for p in params],
            penalties=penalties,
        )
