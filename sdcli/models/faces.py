"""Face restoration (--restore-faces, the WebUI's "Restore faces"): find the faces, restore each, paste back.

The restorer is a GFPGAN file (or CodeFormer, with spandrel_extra_arches installed) from the models folder:
--models-dir's GFPGAN/ or Codeformer/ (a WebUI install's models/GFPGAN, models/Codeformer; ComfyUI's
models/facerestore_models), the newest file whose name holds the restorer's name, loaded through spandrel.
Faces are found by facexlib's RetinaFace detector (the WebUI's), whose weights file must be beside the
restorer (or in ComfyUI's models/facedetection): never downloaded. Detection is the only facexlib call;
cropping, running the restorer (RGB in [-1, 1], as the WebUI feeds it) and pasting back are sdcli's own
(models.face_align). The restorer's noise comes from a generator seeded with the image's seed, so a
restored image is made again from its metadata. Imports torch, numpy, PIL and facexlib inside functions.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sdcli.errors import ModelError, UsageError

FLAG = "--restore-faces"
DETECTOR_FILE = "detection_Resnet50_Final.pth"  # facexlib's retinaface_resnet50 weights


@dataclass(frozen=True)
class RestorerKind:
    """One face restorer: its infotext name, its models-folder kind (models.folders) and the package its
    architecture needs beyond spandrel's core (None: in the core)."""

    label: str
    kind: str
    package: str | None = None


RESTORERS: dict[str, RestorerKind] = {
    "gfpgan": RestorerKind("GFPGAN", "gfpgan"),
    "codeformer": RestorerKind("CodeFormer", "codeformer", "spandrel_extra_arches"),
}


def restorer_key(text: str) -> str:
    """A restorer's spelling (GFPGAN, CodeFormer, any case) -> its key ("none" for WebUI's "None")."""
    return text.strip().lower()


@dataclass(frozen=True)
class FaceRef:
    """A resolved face restorer: which one, its file, the detector's weights and CodeFormer's weight."""

    key: str
    path: Path
    detector: Path
    weight: float = 0.5

    @property
    def label(self) -> str:
        return RESTORERS[self.key].label


class Detector(Protocol):
    """Finds faces: an RGB image -> each face's 5 landmarks (eyes, nose, mouth corners) as (x, y) pairs."""

    def landmarks(self, image: Any) -> list[Any]: ...


class FacexlibDetector:
    """facexlib's RetinaFace (resnet50), as the WebUI's face helper runs it: the image scaled so its short side
    is at least 640 px, faces with eyes under 5 px apart skipped."""

    @staticmethod
    def check(folders: list[Path]) -> Path:
        """The detector's weights file in `folders`; one line naming what is missing."""
        for name in ("facexlib", "cv2"):
            if importlib.util.find_spec(name) is None:
                raise UsageError(f"{FLAG}: face detection needs facexlib and OpenCV, and {name} is not installed; "
                                 "pip install 'sdcli[faces]' (it needs a torchvision that loads beside your torch)")
        for folder in folders:
            if (folder / DETECTOR_FILE).is_file():
                return folder / DETECTOR_FILE
        raise ModelError(f"{FLAG}: the face detector's weights {DETECTOR_FILE} are not in "
                         f"{' or '.join(str(f) for f in folders)}; sdcli never downloads them")

    def __init__(self, weights: Path, device: str) -> None:
        from facexlib.detection import init_detection_model

        self.net = init_detection_model("retinaface_resnet50", half=False, device=device,
                                        model_rootpath=str(weights.parent))

    def landmarks(self, image: Any) -> list[Any]:
        import numpy as np
        from PIL import Image

        scale = max(1.0, 640 / min(image.size))
        size = (int(image.width * scale), int(image.height * scale))
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))[:, :, ::-1])
        found = []
        for box in self.net.detect_faces(bgr) / scale:
            points = np.asarray(box[5:15], dtype=np.float64).reshape(5, 2)
            if np.linalg.norm(points[0] - points[1]) >= 5:
                found.append(points)
        return found


DETECTOR: Any = FacexlibDetector  # the detector class (check, construct, landmarks); tests swap in a double


def resolve_restorer(key: str, library: Any, allow_pickle: bool = False, weight: float = 0.5) -> FaceRef:
    """The restorer `key` names, found in the models folder, with the detector's weights; checked before any
    model loads, each refusal one line naming what is missing."""
    from sdcli.models.safety import PICKLE_SUFFIXES, check_safetensors, refuse_pickle

    row = RESTORERS[key]
    folder = library.folders.get(row.kind) if library is not None else None
    if folder is None:
        raise UsageError(f"{FLAG}: {row.label} needs a models folder (--models-dir, --webui-dir or --comfy-dir) "
                         f"holding a {row.label} model file")
    files = [e.path for e in library.entries(row.kind) if key in e.path.name.lower()]
    if not files:
        raise ModelError(f"{FLAG}: no {row.label} model file (a name containing {row.label!r}) in {folder}")
    path = max(files, key=lambda p: (p.stat().st_mtime, p.name))  # the newest, as the WebUI picks
    if row.package and importlib.util.find_spec(row.package) is None:
        raise UsageError(f"{FLAG}: {row.label} models need {row.package}, which is not installed; "
                         f"pip install {row.package}")
    if path.suffix.lower() == ".safetensors":
        check_safetensors(path, FLAG)
    elif path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise refuse_pickle(path, FLAG)
    detector = DETECTOR.check([path.parent, folder, folder.parent / "facedetection"])
    return FaceRef(key, path.resolve(), detector, weight)


@dataclass
class FaceRestorer:
    """A loaded restorer (a spandrel model) and detector: restore(image, seed) -> image."""

    ref: FaceRef
    model: Any
    detector: Detector

    def restore(self, image: Any, seed: int) -> Any:
        """Each face the detector finds in `image`, restored and pasted back (an image without faces: unchanged)."""
        from sdcli.models.face_align import crop_face, paste_face

        for landmarks in self.detector.landmarks(image):
            face, matrix = crop_face(image, landmarks)
            image = paste_face(image, self.restore_face(face, seed), matrix)
        return image

    def restore_face(self, face: Any, seed: int) -> Any:
        """One aligned 512 px face through the model: RGB in [-1, 1] in and out, truncated to 8 bits."""
        import numpy as np
        import torch
        from PIL import Image

        param = next(self.model.model.parameters())
        pixels = torch.from_numpy(np.asarray(face, dtype=np.float32).transpose(2, 0, 1).copy()) / 255 * 2 - 1
        extra = {"weight": self.ref.weight, "adain": True} if self.ref.key == "codeformer" else {"return_rgb": False}
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # StyleGAN noise: the same image again from the same seed
            out = self.model.model(pixels[None].to(param.device, param.dtype), **extra)[0]
        rgb = (out[0].float().cpu().clamp(-1, 1) + 1) / 2 * 255
        return Image.fromarray(rgb.numpy().transpose(1, 2, 0).astype(np.uint8), "RGB")


def load_restorer(ref: FaceRef, allow_pickle: bool = False, device: str = "cpu") -> FaceRestorer:
    """The restorer file of `ref` through spandrel, and the detector, on `device`."""
    from sdcli.models.safety import load_state_dict
    from sdcli.models.upscalers import import_spandrel, spandrel_model

    state = load_state_dict(ref.path, flag=FLAG, allow_pickle=allow_pickle)
    import_spandrel()
    if RESTORERS[ref.key].package:
        import spandrel_extra_arches  # checked in the plan step

        spandrel_extra_arches.install(ignore_duplicates=True)
    model = spandrel_model(state, ref.path, FLAG, "a face-restoration", device)
    if model.architecture.id.lower() != ref.key:
        raise ModelError(f"{FLAG}: {ref.path} is a {model.architecture.name} model, not {ref.label}")
    return FaceRestorer(ref, model.eval(), DETECTOR(ref.detector, device))
