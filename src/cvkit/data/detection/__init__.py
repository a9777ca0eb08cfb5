"""Detection data: images with boxes -> seeded, sharded ``(images, targets)`` batches.

A batch is ``(images, targets)``, two lists of the same length (images may differ in size)::

    images[i]   float32 tensor [3, H, W], values 0..1 (a GPU run's loader gives uint8, made float on the
                device). Not normalised: torchvision detectors normalise and resize inside their own
                transform, and map boxes back to these coordinates
    targets[i]  {"boxes": float32 [N, 4] xyxy absolute pixels, "labels": int64 [N] in 1..K (0 is the
                 background), "image_id": int (the id ground_truth() gives the image)}

Training targets leave out crowd boxes (COCO ``iscrowd=1``), difficult boxes (VOC, unless
``data.use_difficult``) and boxes with no width or height; an image without boxes stays, with ``boxes``
of shape [0, 4]. Validation and test images are not resized or cropped, so predictions come out in the
coordinates of the original image, which :meth:`DetectionDataModule.ground_truth` describes in COCO
format for evaluation.
"""

from cvkit.data import exported

__all__ = [
    "CocoDetectionDataModule",
    "DetectionDataModule",
    "DetectionRecord",
    "VOCDetectionDataModule",
    "YOLODetectionDataModule",
]
__getattr__ = exported(__name__, __all__)
