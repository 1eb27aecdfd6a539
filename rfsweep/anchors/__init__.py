"""Detector use: anchor design checked against each level's stride, rf and exact ERF, box statistics
(YOLO-style shape metrics, k-means), and anchor export for torchvision and mmdetection.

Anchor search (``rfsweep anchor-search``): every anchor configuration of a space scored over a real
dataset's boxes exactly as torchvision's Faster R-CNN, RetinaNet and SSD match them: :func:`search` and
:func:`match` (:mod:`rfsweep.anchors.scoring`, :mod:`rfsweep.anchors.detectors`,
:mod:`rfsweep.anchors.datasets`).

May import: rfsweep.output and everything below it. Beside rfsweep.nas, never importing it.
"""

from rfsweep.anchors.scoring import match, search

__all__ = ["search", "match"]
