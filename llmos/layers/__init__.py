"""Shared building blocks of the native models: paged attention, rotary embedding, norms, fused linears."""
