"""Face restoration's own parts (models.face_align, models.faces): the crop by landmarks, the feathered paste
back, and the refusals that name what is missing. The restorer end to end: tests/cli/test_restore_faces.py."""

import importlib.util

import numpy as np
import pytest
from PIL import Image, ImageOps

from sdcli.errors import UsageError
from sdcli.models import face_align, faces
from sdcli.models.folders import library_from

LANDMARKS = np.array(face_align.TEMPLATE) * (24 / 512) + [20, 16]  # a face in the box (20, 16)-(44, 40)


def noise(size=64, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_the_crop_puts_the_landmarks_on_the_template():
    matrix = face_align.similarity(LANDMARKS)
    moved = LANDMARKS @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(moved, face_align.TEMPLATE, atol=1e-6)
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    image.putpixel((32, 28), (255, 255, 255))  # one white pixel: where it lands in the crop follows the matrix
    crop, _ = face_align.crop_face(image, LANDMARKS)
    assert crop.size == (512, 512)
    x, y = matrix[:, :2] @ [32, 28] + matrix[:, 2]
    assert np.asarray(crop)[int(y), int(x)].min() > 200 and np.asarray(crop)[5, 5].tolist() == [0, 0, 0]
    corner = face_align.crop_face(noise(), LANDMARKS - [32, 28])[0]  # a face centred on the image's corner
    assert np.asarray(corner)[5, 5].tolist() == list(face_align.BORDER)  # past the edge: the helper's grey


def test_a_pasted_face_changes_pixels_inside_its_box_only():
    image = noise()
    crop, matrix = face_align.crop_face(image, LANDMARKS)
    pasted = np.asarray(face_align.paste_face(image, ImageOps.invert(crop), matrix), dtype=np.int16)
    before = np.asarray(image, dtype=np.int16)
    changed = (pasted != before).any(-1)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 20 and xs.max() <= 44 and ys.min() >= 16 and ys.max() <= 40  # the face's square
    assert changed[18:38, 22:42].mean() > 0.95  # the face's middle is the restored face ...
    inverted = 255 - before[24:32, 28:36]
    assert np.abs(pasted[24:32, 28:36] - inverted).mean() < 40  # ... here the inverted crop, resampled twice
    outside = np.ones_like(changed)
    outside[16:41, 20:45] = False
    assert np.array_equal(pasted[outside], before[outside])  # exactly the input's pixels


def test_the_feathered_mask_blends_the_edge():
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    crop, matrix = face_align.crop_face(image, LANDMARKS)
    white = np.asarray(face_align.paste_face(image, Image.new("RGB", (512, 512), "white"), matrix))[:, :, 0]
    row = white[28, 16:48]
    assert row.max() == 255 and 0 < row[row > 0].min() < 200  # a soft edge, not a hard square


def test_no_models_folder_or_no_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(UsageError, match=r"^--restore-faces: GFPGAN needs a models folder \(--models-dir"):
        faces.resolve_restorer("gfpgan", None)
    (tmp_path / "GFPGAN").mkdir()
    (tmp_path / "GFPGAN" / faces.DETECTOR_FILE).write_bytes(b"x")  # the detector's weights are not a restorer
    with pytest.raises(UsageError) as exc:
        faces.resolve_restorer("gfpgan", library_from(tmp_path, None))
    assert str(exc.value) == (f"--restore-faces: no GFPGAN model file (a name containing 'GFPGAN') in "
                              f"{tmp_path / 'GFPGAN'}")


@pytest.mark.skipif(importlib.util.find_spec("spandrel_extra_arches") is not None, reason="it is installed")
def test_codeformer_names_the_package_it_needs(tmp_path):
    (tmp_path / "Codeformer").mkdir()
    (tmp_path / "Codeformer" / "codeformer-v0.1.0.safetensors").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"^--restore-faces: CodeFormer models need spandrel_extra_arches, which is "
                                         r"not installed; pip install spandrel_extra_arches$"):
        faces.resolve_restorer("codeformer", library_from(tmp_path, None))


@pytest.fixture
def gfpgan_folder(tmp_path):
    from safetensors.numpy import save_file

    (tmp_path / "GFPGAN").mkdir()
    save_file({"toRGB.0.weight": np.zeros(1, np.float32)}, str(tmp_path / "GFPGAN" / "GFPGANv1.4.safetensors"))
    return tmp_path


@pytest.mark.skipif(importlib.util.find_spec("facexlib") is not None, reason="facexlib is installed")
def test_missing_facexlib_is_one_line_naming_it(gfpgan_folder):
    with pytest.raises(UsageError) as exc:
        faces.resolve_restorer("gfpgan", library_from(gfpgan_folder, None))
    assert str(exc.value) == ("--restore-faces: face detection needs facexlib and OpenCV, and facexlib is not "
                              "installed; pip install 'sdcli[faces]' (it needs a torchvision that loads beside "
                              "your torch)")


def test_missing_detector_weights_name_the_file_and_are_never_downloaded(gfpgan_folder, monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as if facexlib and OpenCV were installed
                        lambda name, *a: object() if name in ("facexlib", "cv2") else found(name, *a))
    with pytest.raises(UsageError, match=r"^--restore-faces: the face detector's weights "
                                         r"detection_Resnet50_Final.pth are not in .*GFPGAN or .*; sdcli never "
                                         r"downloads them$"):
        faces.resolve_restorer("gfpgan", library_from(gfpgan_folder, None))
    (gfpgan_folder / "GFPGAN" / faces.DETECTOR_FILE).write_bytes(b"x")
    ref = faces.resolve_restorer("gfpgan", library_from(gfpgan_folder, None), weight=0.7)
    assert (ref.label, ref.path.name, ref.detector.name, ref.weight) == (
        "GFPGAN", "GFPGANv1.4.safetensors", faces.DETECTOR_FILE, 0.7)


def test_comfyui_facerestore_models_folder(gfpgan_folder, face_detector):
    comfy = gfpgan_folder / "comfy"
    (comfy / "models" / "facerestore_models").mkdir(parents=True)
    (gfpgan_folder / "GFPGAN" / "GFPGANv1.4.safetensors").rename(
        comfy / "models" / "facerestore_models" / "GFPGANv1.4.safetensors")
    ref = faces.resolve_restorer("gfpgan", library_from(None, None, comfy))
    assert ref.path == (comfy / "models" / "facerestore_models" / "GFPGANv1.4.safetensors").resolve()


def test_the_facexlib_wrapper_passes_the_folder_and_reads_its_boxes(tmp_path, monkeypatch):
    """FacexlibDetector against a stand-in of facexlib's detection API (init_detection_model, detect_faces: rows
    of x1, y1, x2, y2, score and 5 landmark pairs on the BGR image it is given); the real one cannot load here."""
    import sys
    import types

    calls = {}

    class Net:
        def detect_faces(self, bgr):
            calls["bgr"] = bgr
            eyes_far, eyes_near = [200, 100, 400, 100], [200, 100, 240, 100]  # 10 px and 2 px apart, unscaled
            return np.array([[0, 0, 9, 9, 0.99, *eyes_far, 300, 200, 220, 300, 380, 300],
                             [0, 0, 9, 9, 0.99, *eyes_near, 300, 200, 220, 300, 380, 300]], dtype=np.float32)

    def init_detection_model(name, half, device, model_rootpath):
        calls["init"] = (name, half, device, model_rootpath)
        return Net()

    detection = types.ModuleType("facexlib.detection")
    detection.init_detection_model = init_detection_model
    monkeypatch.setitem(sys.modules, "facexlib", types.ModuleType("facexlib"))
    monkeypatch.setitem(sys.modules, "facexlib.detection", detection)
    detector = faces.FacexlibDetector(tmp_path / faces.DETECTOR_FILE, "cpu")
    assert calls["init"] == ("retinaface_resnet50", False, "cpu", str(tmp_path))  # its weights from our folder
    [found] = detector.landmarks(Image.new("RGB", (64, 32), (255, 0, 0)))  # the near-eyed face is skipped
    assert calls["bgr"].shape == (640, 1280, 3) and calls["bgr"][0, 0].tolist() == [0, 0, 255]  # short side 640
    assert np.allclose(found, [[10, 5], [20, 5], [15, 10], [11, 15], [19, 15]])  # back in the image's pixels
