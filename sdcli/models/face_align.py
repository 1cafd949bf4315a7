"""The face-restoration geometry sdcli owns: crop a face by its 5 landmarks, paste a restored face back.

What facexlib's FaceRestoreHelper does around the restorer (the WebUI's settings: upscale 1, 512 px faces,
crop ratio 1), written with numpy and Pillow because facexlib's own helper needs OpenCV and torchvision:
a similarity transform takes the landmarks (eyes, nose, mouth corners) onto the 512 px template, the crop
is warped bilinearly with the helper's grey border, and the restored face is warped back through the
inverse transform and blended with its feathered mask (the warped square eroded, then its centre eroded
by a 20th of the face's size and Gaussian-blurred by as much). sdcli does not use the face-parsing mask
(facexlib's use_parse): the blend is the square's feathered mask. Pixels outside the mask are the input's,
unchanged. Imports numpy and PIL inside functions only.
"""

from __future__ import annotations

from typing import Any

FACE_SIZE = 512
# facexlib's 512 px template: left eye, right eye, nose tip, left and right mouth corners.
TEMPLATE = ((192.98138, 239.94708), (318.90277, 240.1936), (256.63416, 314.01935),
            (201.26117, 371.41043), (313.08905, 371.15118))
BORDER = (132, 133, 135)  # the helper's crop border (135, 133, 132 in its BGR), in RGB


def similarity(points: Any, template: Any = TEMPLATE) -> Any:
    """The 2x3 rotation+scale+shift matrix taking `points` (5x2) onto `template`, least squares."""
    import numpy as np

    src, dst = np.asarray(points, dtype=np.float64), np.asarray(template, dtype=np.float64)
    rows = []
    for (x, y) in src:  # u = a x - b y + tx, v = b x + a y + ty
        rows += [(x, -y, 1.0, 0.0), (y, x, 0.0, 1.0)]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def invert(matrix: Any) -> Any:
    """The inverse of a 2x3 affine matrix."""
    import numpy as np

    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -linear @ matrix[:, 2:]])


def warp(image: Any, matrix: Any, size: tuple[int, int], fill: Any) -> Any:
    """`image` warped by `matrix` (pixel centres at whole coordinates, as OpenCV's warpAffine) into `size`,
    bilinear, `fill` outside."""
    from PIL import Image

    inverse = invert(matrix)  # Pillow asks, for each output pixel, where to sample; its centres are at +0.5
    shift = -inverse[:, :2] @ [0.5, 0.5] + 0.5
    coeffs = (*inverse[0, :2], inverse[0, 2] + shift[0], *inverse[1, :2], inverse[1, 2] + shift[1])
    return image.transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR, fillcolor=fill)


def crop_face(image: Any, landmarks: Any) -> tuple[Any, Any]:
    """The aligned FACE_SIZE crop of the face at `landmarks` and the matrix that made it."""
    matrix = similarity(landmarks)
    return warp(image.convert("RGB"), matrix, (FACE_SIZE, FACE_SIZE), BORDER), matrix


def paste_face(image: Any, face: Any, matrix: Any) -> Any:
    """`face` (the restored crop) warped back into `image` through `matrix`'s inverse, feathered."""
    import numpy as np
    from PIL import Image

    size = image.size
    back = invert(matrix)
    restored = np.asarray(warp(face.convert("RGB"), back, size, (0, 0, 0)), dtype=np.float32)
    square = Image.fromarray(np.ones((FACE_SIZE, FACE_SIZE), np.float32), "F")
    mask = _erode(np.asarray(warp(square, back, size, 0.0), dtype=np.float32), 2)
    pasted = mask[:, :, None] * restored
    edge = int(float(mask.sum()) ** 0.5) // 20
    soft = _blur(_erode(mask, edge * 2), edge * 2 + 1)[:, :, None]
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray((soft * pasted + (1 - soft) * base).astype(np.uint8), "RGB")


def _erode(mask: Any, k: int) -> Any:
    """OpenCV's erode with a k x k box (anchor at its centre, the border never lowers the minimum)."""
    import numpy as np

    if k < 2:
        return mask
    before, after = k // 2, k - 1 - k // 2
    out = mask
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (before, after)
        padded = np.pad(out, pad, constant_values=np.inf)
        out = np.lib.stride_tricks.sliding_window_view(padded, k, axis=axis).min(axis=-1)
    return out


def _blur(mask: Any, k: int) -> Any:
    """OpenCV's GaussianBlur with a k x k kernel and sigma from k (its getGaussianKernel), reflect-101 borders."""
    import numpy as np

    if k < 3:
        return mask
    fixed = {3: (0.25, 0.5, 0.25), 5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
             7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)}
    if k in fixed:
        kernel = np.array(fixed[k])
    else:
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
        kernel = np.exp(-((np.arange(k) - (k - 1) / 2) ** 2) / (2 * sigma * sigma))
        kernel /= kernel.sum()
    out = mask
    half = k // 2
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (half, half)
        mode = "reflect" if out.shape[axis] > half else "symmetric"
        padded = np.pad(out, pad, mode=mode)
        windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=axis)
        out = (windows * kernel).sum(axis=-1).astype(np.float32)
    return out
