"""The ``flowreg_torch`` backend: the ``flowreg`` model in PyTorch (CPU, or CUDA when present).

Same energy, pyramid, warping, motion tensors (gc, gray, census), spatial weight maps, robust
penalisers and median filtering as :mod:`labsession.motion._flowreg_kernels`, on whole batches
of frames at once. The only
algorithmic difference is the relaxation order: red-black SOR (the two checkerboard halves
updated in turn, so each half is one vectorised step) instead of lexicographic SOR, so results
agree with ``flowreg`` within a tolerance, not bit for bit (tests/motion/test_torch.py).
Needs the optional extra ``labsession[torch]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labsession.errors import ConfigError
from labsession.motion._checks import check_backend_params
from labsession.motion._flowreg_kernels import _CENSUS_OFFSETS, _EPS_CS, pyramid_depth
from labsession.motion._options import OFOptions
from labsession.motion._weight_maps import data_weight, level_weight

__all__ = ["TorchFlowregBackend"]

_EPS_PSI = 1e-5
_EPS_GC = 1e-6
_OMEGA = 1.95


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "flow_backend 'flowreg_torch' needs PyTorch: pip install 'labsession[torch]'"
        ) from exc
    return torch


class TorchFlowregBackend:
    """Variational flow in PyTorch.

    ``backend_params``: ``device`` (default ``cuda`` when available, else ``cpu``) and
    ``batch_size`` (frames solved together; default 256 on CUDA, 32 on CPU).
    """

    def __init__(self, options: OFOptions) -> None:
        self.torch = _import_torch()
        params = dict(options.backend_params)
        check_backend_params("flowreg_torch", params, ("batch_size", "device"))
        torch = self.torch
        default = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(params.get("device", default))
        # whole buffers keep a GPU busy (about 240 frames/s at 256x256 balanced on an H100)
        self.batch_size = int(params.get("batch_size", 256 if self.device.type == "cuda" else 32))
        self.options = options

    # -- building blocks -------------------------------------------------------------------
    def _blur(self, x: Any, sigma: float) -> Any:
        torch = self.torch
        F = torch.nn.functional
        radius = max(1, math.ceil(3.0 * sigma))
        k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (k / sigma) ** 2)
        kernel = kernel / kernel.sum()
        n, c, h, w = x.shape
        flat = x.reshape(n * c, 1, h, w)
        flat = F.conv2d(
            F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1)
        )
        flat = F.conv2d(
            F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1)
        )
        return flat.reshape(n, c, h, w)

    def _resize(self, x: Any, size: tuple[int, int], mode: str = "bilinear") -> Any:
        F = self.torch.nn.functional
        return F.interpolate(x, size=size, mode=mode, align_corners=False)

    def _grad(self, f: Any, hx: float, hy: float) -> tuple[Any, Any]:
        F = self.torch.nn.functional
        p = F.pad(f, (1, 1, 1, 1), mode="replicate")
        gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / (2.0 * hx)
        gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / (2.0 * hy)
        return gx, gy

    def _warp(self, moving: Any, fixed: Any, u: Any, v: Any, sx: float, sy: float) -> Any:
        torch = self.torch
        _, _, h, w = moving.shape
        ys = torch.arange(h, device=u.device, dtype=u.dtype).view(1, h, 1) + v * sy
        xs = torch.arange(w, device=u.device, dtype=u.dtype).view(1, 1, w) + u * sx
        grid = torch.stack((2.0 * xs / max(w - 1, 1) - 1.0, 2.0 * ys / max(h - 1, 1) - 1.0), -1)
        out = torch.nn.functional.grid_sample(
            moving, grid, mode="bicubic", padding_mode="border", align_corners=True
        )
        inside = ((ys >= 0) & (ys <= h - 1) & (xs >= 0) & (xs <= w - 1)).unsqueeze(1)
        return torch.where(inside, out, fixed.expand_as(out))

    def _census(self, f: Any, hx: float, hy: float) -> list[Any]:
        """Smoothed census signs of ``f`` (n, c, h, w), one tensor per neighbour (replicated
        borders), as ``_census_signs`` of the numba kernels."""
        F = self.torch.nn.functional
        _, _, h, w = f.shape
        p = F.pad(f, (1, 1, 1, 1), mode="replicate")
        signs = []
        for dy, dx in _CENSUS_OFFSETS:
            dist = math.sqrt((hy * dy) ** 2 + (hx * dx) ** 2)
            r = (p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] - f) / dist
            signs.append(0.5 * (1.0 + r / self.torch.sqrt(r * r + _EPS_CS * _EPS_CS)))
        return signs

    def _tensor_cs(self, f1: Any, f2: Any, hx: float, hy: float) -> list[Any]:
        """Census motion tensor parts (as ``motion_tensor_cs``), border not yet zeroed."""
        parts = [self.torch.zeros_like(f2) for _ in range(6)]
        for s1, s2 in zip(self._census(f1, hx, hy), self._census(f2, hx, hy), strict=True):
            gx1, gy1 = self._grad(s1, hx, hy)
            gx2, gy2 = self._grad(s2, hx, hy)
            sx, sy, st = 0.5 * (gx1 + gx2), 0.5 * (gy1 + gy2), s2 - s1
            for part, value in zip(
                parts, (sx * sx, sx * sy, sx * st, sy * sy, sy * st, st * st), strict=True
            ):
                part += value
        return [0.25 * part for part in parts]

    def _tensor(self, f1: Any, f2: Any, hx: float, hy: float, constancy: str) -> list[Any]:
        F = self.torch.nn.functional
        gx1, gy1 = self._grad(f1, hx, hy)
        gx2, gy2 = self._grad(f2, hx, hy)
        if constancy == "cs":
            parts = self._tensor_cs(f1, f2, hx, hy)
        elif constancy == "gc":
            p1 = F.pad(f1, (1, 1, 1, 1), mode="replicate")
            p2 = F.pad(f2, (1, 1, 1, 1), mode="replicate")

            def second(p: Any, f: Any) -> tuple[Any, Any]:
                fxx = (p[..., 1:-1, :-2] - 2 * f + p[..., 1:-1, 2:]) / (hx * hx)
                fyy = (p[..., :-2, 1:-1] - 2 * f + p[..., 2:, 1:-1]) / (hy * hy)
                return fxx, fyy

            fxx1, fyy1 = second(p1, f1)
            fxx2, fyy2 = second(p2, f2)
            fxx, fyy = 0.5 * (fxx1 + fxx2), 0.5 * (fyy1 + fyy2)
            fxy = 0.5 * (self._grad(gx1, hx, hy)[1] + self._grad(gx2, hx, hy)[1])
            fxt, fyt = gx2 - gx1, gy2 - gy1
            rx = 1.0 / (fxx * fxx + fxy * fxy + _EPS_GC)
            ry = 1.0 / (fxy * fxy + fyy * fyy + _EPS_GC)
            parts = [
                rx * fxx * fxx + ry * fxy * fxy,
                rx * fxx * fxy + ry * fxy * fyy,
                rx * fxx * fxt + ry * fxy * fyt,
                rx * fxy * fxy + ry * fyy * fyy,
                rx * fxy * fxt + ry * fyy * fyt,
                rx * fxt * fxt + ry * fyt * fyt,
            ]
        else:
            fx, fy, ft = 0.5 * (gx1 + gx2), 0.5 * (gy1 + gy2), f2 - f1
            parts = [fx * fx, fx * fy, fx * ft, fy * fy, fy * ft, ft * ft]
        for part in parts:  # no data term on the 1-pixel border
            part[..., 0, :] = 0
            part[..., -1, :] = 0
            part[..., :, 0] = 0
            part[..., :, -1] = 0
        return parts

    def _median5(self, x: Any) -> Any:
        F = self.torch.nn.functional
        n, h, w = x.shape
        p = F.pad(x.unsqueeze(1), (2, 2, 2, 2), mode="reflect")
        patches = F.unfold(p, kernel_size=5)  # (n, 25, h*w)
        return patches.median(dim=1).values.view(n, h, w)

    def _solve(
        self,
        J: list[Any],
        weight: Any,
        u: Any,
        v: Any,
        ax_: float,
        ay_: float,
        hx: float,
        hy: float,
    ) -> tuple[Any, Any]:
        torch = self.torch
        opts = self.options
        _, h, w = u.shape
        ax, ay = ax_ / (hx * hx), ay_ / (hy * hy)
        du = torch.zeros_like(u)
        dv = torch.zeros_like(u)
        psi = torch.ones_like(J[0])
        diff = torch.ones_like(u)
        yy, xx = torch.meshgrid(
            torch.arange(h, device=u.device), torch.arange(w, device=u.device), indexing="ij"
        )
        red = ((yy + xx) % 2 == 0).unsqueeze(0)

        def weights(d: Any) -> tuple[Any, Any, Any, Any]:
            gl = torch.zeros_like(d)
            gr = torch.zeros_like(d)
            gu = torch.zeros_like(d)
            gd = torch.zeros_like(d)
            gl[..., :, 1:] = 0.5 * (d[..., :, 1:] + d[..., :, :-1]) * ax
            gr[..., :, :-1] = gl[..., :, 1:]
            gu[..., 1:, :] = 0.5 * (d[..., 1:, :] + d[..., :-1, :]) * ay
            gd[..., :-1, :] = gu[..., 1:, :]
            return gl, gr, gu, gd

        def neighbours(f: Any, g: tuple[Any, Any, Any, Any]) -> Any:
            gl, gr, gu, gd = g
            out = torch.zeros_like(f)
            out[..., :, 1:] += gl[..., :, 1:] * f[..., :, :-1]
            out[..., :, :-1] += gr[..., :, :-1] * f[..., :, 1:]
            out[..., 1:, :] += gu[..., 1:, :] * f[..., :-1, :]
            out[..., :-1, :] += gd[..., :-1, :] * f[..., 1:, :]
            return out

        g = weights(diff)
        den = sum(g)
        # (C,) channel weights, or this level's (C, h, w) map: the same for all frames
        wgt = weight.view(1, -1, 1, 1) if weight.dim() == 1 else weight.unsqueeze(0)
        for it in range(opts.iterations):
            if (it + 1) % opts.update_lag == 0:
                a, b = du.unsqueeze(1), dv.unsqueeze(1)
                s2 = (
                    J[0] * a * a
                    + 2 * J[1] * a * b
                    + 2 * J[2] * a
                    + J[3] * b * b
                    + 2 * J[4] * b
                    + J[5]
                ).clamp_min(0.0)
                psi = opts.a_data * (s2 + _EPS_PSI) ** (opts.a_data - 1.0)
                if opts.a_smooth != 1.0:
                    ux, uy = self._grad(u + du, hx, hy)
                    vx, vy = self._grad(v + dv, hx, hy)
                    s2 = ux * ux + uy * uy + vx * vx + vy * vy
                    diff = opts.a_smooth * (s2 + _EPS_PSI) ** (opts.a_smooth - 1.0)
                    g = weights(diff)
                    den = sum(g)
            wp = wgt * psi
            d11 = (wp * J[0]).sum(1)
            d12 = (wp * J[1]).sum(1)
            d13 = (wp * J[2]).sum(1)
            d22 = (wp * J[3]).sum(1)
            d23 = (wp * J[4]).sum(1)
            den_u, den_v = den + d11, den + d22
            for colour in (red, ~red):
                num_u = neighbours(u + du, g) - den * u
                new_u = (num_u - d12 * dv - d13) / den_u.clamp_min(1e-30)
                upd = torch.where(den_u > 0, (1 - _OMEGA) * du + _OMEGA * new_u, du)
                du = torch.where(colour, upd, du)
                num_v = neighbours(v + dv, g) - den * v
                new_v = (num_v - d12 * du - d23) / den_v.clamp_min(1e-30)
                upd = torch.where(den_v > 0, (1 - _OMEGA) * dv + _OMEGA * new_v, dv)
                dv = torch.where(colour, upd, dv)
        return du, dv

    # -- driver ----------------------------------------------------------------------------
    def _flow(self, fixed: Any, moving: Any, init: Any, weight: np.ndarray) -> Any:
        opts = self.options
        _, _, height, width = moving.shape
        top = pyramid_depth(height, width, opts.eta, opts.levels)
        bottom = opts.effective_min_level
        bottom = max(top - 1 if top <= bottom else bottom, 0)
        top = max(top, bottom)
        sigma = 0.6 * math.sqrt(max(1.0 / opts.eta**2 - 1.0, 0.0))
        fixed_pyr, moving_pyr = [fixed], [moving]
        for i in range(1, top + 1):
            size = (max(1, round(height * opts.eta**i)), max(1, round(width * opts.eta**i)))
            # bicubic levels, as the numba backend's (_flowreg_batch._pyramid says why)
            fixed_pyr.append(self._resize(self._blur(fixed_pyr[-1], sigma), size, "bicubic"))
            moving_pyr.append(self._resize(self._blur(moving_pyr[-1], sigma), size, "bicubic"))
        uv = init
        for i in range(top, bottom - 1, -1):
            f1, f2 = fixed_pyr[i], moving_pyr[i]
            lh, lw = f1.shape[-2:]
            uv = self._resize(uv, (lh, lw))
            u, v = uv[:, 0], uv[:, 1]
            hx, hy = width / lw, height / lh
            warped = self._warp(f2, f1, u, v, 1.0 / hx, 1.0 / hy)
            J = self._tensor(f1.expand_as(warped), warped, hx, hy, opts.constancy_assumption.value)
            scale = 1.0 if i == bottom else opts.eta ** (-0.5 * i)
            # a spatial map is resized from full resolution to each level (as numba's)
            level = weight if weight.ndim == 1 else level_weight(weight, lh, lw)
            wt = self.torch.from_numpy(level).to(uv.device)
            du, dv = self._solve(J, wt, u, v, opts.alpha[0] * scale, opts.alpha[1] * scale, hx, hy)
            if min(lh, lw) > 5:
                du, dv = self._median5(du), self._median5(dv)
            uv = torch_stack(self.torch, u + du, v + dv)
        if uv.shape[-2:] != (height, width):
            uv = self._resize(uv, (height, width), mode="bicubic")
        return uv

    def __call__(
        self,
        reference: np.ndarray,
        moving: np.ndarray,
        *,
        weight: np.ndarray,
        w_init: np.ndarray | None = None,
    ) -> np.ndarray:
        torch = self.torch
        dev = self.device
        fixed = torch.from_numpy(np.ascontiguousarray(np.moveaxis(reference, -1, 0))).to(dev)
        fixed = fixed.unsqueeze(0).float()
        n_ch, height, width = fixed.shape[1:]
        wt = np.asarray(data_weight(self.options, np.asarray(weight), n_ch, height, width))
        wt = np.ascontiguousarray(wt, dtype=np.float32)
        out = np.empty((*moving.shape[:3], 2), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(moving), self.batch_size):
                stop = min(start + self.batch_size, len(moving))
                frames = (
                    torch.from_numpy(np.ascontiguousarray(np.moveaxis(moving[start:stop], -1, 1)))
                    .to(dev)
                    .float()
                )
                if w_init is None:
                    init = torch.zeros((stop - start, 2, *moving.shape[1:3]), device=dev)
                else:
                    init = (
                        torch.from_numpy(
                            np.ascontiguousarray(np.moveaxis(w_init[start:stop], -1, 1))
                        )
                        .to(dev)
                        .float()
                    )
                uv = self._flow(fixed, frames, init, wt)
                out[start:stop] = uv.permute(0, 2, 3, 1).cpu().numpy()
        return out


def torch_stack(torch: Any, u: Any, v: Any) -> Any:
    """``(n, 2, h, w)`` from two ``(n, h, w)`` fields."""
    return torch.stack((u, v), dim=1)
