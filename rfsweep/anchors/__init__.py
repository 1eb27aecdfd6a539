"""Detector use: anchor design checked against each level's stride, rf and exact ERF, box statistics
(YOLO-style shape metrics, k-means), and anchor export for torchvision and mmdetection.

May import: rfsweep.output and everything below it. Beside rfsweep.nas, never importing it.
"""
