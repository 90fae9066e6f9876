"""Regenerate data/reference_fp.npz: FP frames of a small object computed by a deliberately naive
NumPy loop that follows fp-conventions.md line by line (independent of ptycho_app.physics).

Run: python scripts/make_reference_data.py
"""

from pathlib import Path

import numpy as np

M, UPSAMPLE = 8, 3
N = M * UPSAMPLE
WAVELENGTH, NA, MAG, PIXEL, Z = 630e-9, 0.1, 4.0, 6.5e-6, 60e-3
DEFOCUS = 8e-6

rng = np.random.default_rng(2024)
obj = (0.5 + 0.5 * rng.random((N, N))) * np.exp(1j * (rng.random((N, N)) - 0.5) * 2)
leds = np.array([[y, x] for y in (-4e-3, 0.0, 4e-3) for x in (-4e-3, 0.0, 4e-3)]) + [0.5e-3, -0.3e-3]

dx_lr = PIXEL / MAG
dk = 1 / (M * dx_lr)
S = np.fft.fftshift(np.fft.fft2(obj))
frames = np.zeros((len(leds), M, M))
sines = np.zeros((len(leds), 2))
for j, (y, x) in enumerate(leds):
    r = np.sqrt(x * x + y * y + Z * Z)
    sy, sx = y / r, x / r
    sines[j] = sy, sx
    cy = N // 2 + int(round(sy / (WAVELENGTH * dk)))
    cx = N // 2 + int(round(sx / (WAVELENGTH * dk)))
    window = S[cy - M // 2:cy - M // 2 + M, cx - M // 2:cx - M // 2 + M]
    pupil = np.zeros((M, M), complex)
    for p in range(M):
        for q in range(M):
            fy, fx = (p - M // 2) * dk, (q - M // 2) * dk
            if fy * fy + fx * fx <= (NA / WAVELENGTH) ** 2:
                kz = np.sqrt(1 / WAVELENGTH**2 - fy * fy - fx * fx)
                pupil[p, q] = np.exp(2j * np.pi * DEFOCUS * kz)
    psi = np.fft.ifft2(np.fft.ifftshift(pupil * window)) * (M / N) ** 2
    frames[j] = np.abs(psi) ** 2

out = Path(__file__).resolve().parents[1] / "data" / "reference_fp.npz"
np.savez_compressed(out, object=obj, led_positions=leds, direction_sines=sines, frames=frames,
                    wavelength=WAVELENGTH, na=NA, magnification=MAG, camera_pixel=PIXEL,
                    led_distance=Z, frame_size=M, upsample=UPSAMPLE, defocus=DEFOCUS)
print("wrote", out, frames.shape)
