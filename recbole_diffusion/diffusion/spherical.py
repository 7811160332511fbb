"""Diffusion on the unit hypersphere: tangent projection, exponential and log maps, geodesic noising.

A point ``x`` lies on the sphere when ``||x|| = 1`` (the last dimension holds the coordinates). The forward process
is a geodesic random walk: Gaussian noise is projected onto the tangent space at ``x0``, scaled by the schedule's
``sqrt(1 - ab_t)`` and followed along the great circle, ``x_t = exp_{x0}(sqrt(1 - ab_t) P_{x0} eps)``. The reverse
chain takes the usual DDPM or DDIM step of a :class:`GaussianDiffusion` and projects the result back onto the
sphere after every step. Nothing here knows about recommendation.

``noise_scale`` multiplies the Gaussian noise. Unit noise (the default) has a tangent norm of about ``sqrt(d - 1)``,
so the geodesic angle ``sqrt(1 - ab_t) sqrt(d - 1)`` wraps around the sphere (several times for ``d = 64``) and is
not monotone in ``t``. :func:`right_angle_noise_scale` picks the scale at which the angle grows monotonically to
``pi / 2`` at the last step, the angle at which a uniformly random point of a high-dimensional sphere lies, so that
``x_T`` matches the uniform starting point of :func:`spherical_sample`.
"""

import math

import torch
import torch.nn.functional as F


def project_to_sphere(x, eps=1e-12):
    """Re-normalise ``x`` to unit norm along the last dimension."""
    return F.normalize(x, dim=-1, eps=eps)


def tangent_projection(x, v):
    """The component of ``v`` in the tangent space of the sphere at ``x``: ``v - <v, x> x``."""
    return v - (v * x).sum(dim=-1, keepdim=True) * x


def exp_map(x, v, eps=1e-12):
    """Walk from ``x`` along the great circle with initial velocity ``v`` (tangent at ``x``) for length ``||v||``.

    ``exp_x(v) = cos(||v||) x + sin(||v||) v / ||v||``; the result is re-normalised against rounding drift.
    """
    norm = v.norm(dim=-1, keepdim=True)
    direction = v / norm.clamp(min=eps)
    return project_to_sphere(torch.cos(norm) * x + torch.sin(norm) * direction)


def geodesic_distance(x, y):
    """Great-circle angle between unit vectors, ``2 asin(||x - y|| / 2)`` (stable near 0, unlike ``acos``)."""
    chord = (x - y).norm(dim=-1)
    return 2 * torch.asin((chord / 2).clamp(max=1.0))


def log_map(x, y, eps=1e-12):
    """Inverse of :func:`exp_map`: the tangent vector at ``x`` pointing to ``y`` with the geodesic length."""
    direction = tangent_projection(x, y)
    angle = geodesic_distance(x, y).unsqueeze(-1)
    return angle * direction / direction.norm(dim=-1, keepdim=True).clamp(min=eps)


def right_angle_noise_scale(diffusion, dim):
    """The ``noise_scale`` whose mean geodesic angle at the last step is ``pi / 2``: ``(pi/2) / sqrt((d-1)(1-ab_T))``.

    ``dim`` is the ambient dimension ``d`` (the sphere is ``S^{d-1}``, its tangent noise has norm ~ ``sqrt(d - 1)``).
    """
    return (math.pi / 2) / math.sqrt((dim - 1) * (1.0 - float(diffusion.alphas_cumprod[-1])))


def geodesic_q_sample(diffusion, x0, t, noise=None, noise_scale=1.0):
    """Geodesic forward noising ``x_t = exp_{x0}(sqrt(1 - ab_t) P_{x0}(s eps))`` with the schedule of ``diffusion``.

    ``x0`` must lie on the sphere; ``t`` is a ``[B]`` LongTensor (or int) of 0-based steps, as in ``q_sample``;
    ``s`` is ``noise_scale``.
    """
    if noise is None:
        noise = torch.randn_like(x0)
    scale = noise_scale * diffusion.at_step(diffusion.sqrt_one_minus_alphas_cumprod, t, x0)
    return exp_map(x0, scale * tangent_projection(x0, noise))


def spherical_step(diffusion, model_output, x_t, t, t_prev=None, eta=0.0, generator=None, noise_scale=1.0):
    """One reverse step of ``diffusion`` (DDPM when ``t_prev`` is None, else DDIM to ``t_prev``), back on the sphere.

    The step runs in coordinates divided by ``noise_scale`` (where the noise has unit variance); the projection
    back onto the sphere removes that scale again, so the step's noise is ``noise_scale`` times the usual one.
    """
    x_t = x_t / noise_scale
    if diffusion.prediction_type == "x0":
        model_output = model_output / noise_scale
    return project_to_sphere(diffusion.reverse_step(model_output, x_t, t, t_prev, eta=eta, generator=generator))


def spherical_sample(
    diffusion, denoise_fn, shape, device, num_inference_steps=None, eta=0.0, generator=None, noise_scale=1.0
):
    """Reverse chain on the sphere from a uniformly random unit vector; returns the generated ``x0``.

    :meth:`GaussianDiffusion.sample` (same arguments: ``num_inference_steps`` None or ``T`` runs the full DDPM chain,
    fewer runs DDIM) with every step re-normalised to unit length by :func:`spherical_step`; ``noise_scale`` as there.
    """
    x_T = project_to_sphere(torch.randn(shape, generator=generator, device=device))

    def step(model_output, x_t, t, t_prev):
        return spherical_step(
            diffusion, model_output, x_t, t, t_prev, eta=eta, generator=generator, noise_scale=noise_scale
        )

    return diffusion.sample(
        denoise_fn, shape, device, num_inference_steps=num_inference_steps, x_T=x_T, generator=generator, step=step
    )
