"""Image sources for verification: one async interface over OpenCV, a folder of images and the simulator."""
