"""Load the weights of the plugin's :class:`recbole_diffusion.model.layers.GuidanceEncoder` into the official DreamRec
or PreferDiff history encoder, for the tests that compare the two (they run when an official snapshot is given)."""

import torch


def copy_guidance_encoder(encoder, official_blocks, official_positions):
    """Copy ``encoder``'s weights into ``official_blocks`` (modules with ``ln_1``, ``ln_2``, ``ln_3``, ``mh_attn`` and
    ``feed_forward``, one per block: the official ``Tenc`` itself or PreferDiff's ``layers``) and the official position
    embedding ``official_positions``. The LayerNorms are first moved off their initial identity, as training does:
    the official attention zeroes the weights of a query whose normalised vector sums to exactly 0 (meant for
    padding), which at the identity also happens to real positions by rounding."""
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
        official_positions.weight.copy_(encoder.position_embedding.weight)
        for block, official in zip(encoder.blocks, official_blocks, strict=True):
            official.ln_1.load_state_dict(block["query_norm"].state_dict())
            official.ln_2.load_state_dict(block["feed_forward_norm"].state_dict())
            official.ln_3.load_state_dict(block["output_norm"].state_dict())
            official.feed_forward.layer_norm.load_state_dict(block["feed_forward_residual_norm"].state_dict())
            for name in ("query", "key", "value"):
                getattr(official.mh_attn, f"linear_{name[0]}").load_state_dict(block[name].state_dict())
            for linear, convolution in ((block["feed_forward"][0], "w_1"), (block["feed_forward"][2], "w_2")):
                getattr(official.feed_forward, convolution).weight.copy_(linear.weight[:, :, None])
                getattr(official.feed_forward, convolution).bias.copy_(linear.bias)
