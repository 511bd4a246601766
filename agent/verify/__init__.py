"""Verification's eyes: decode printed codes from camera images and grade their print quality.

decode.Decoder reads codes from a frame (crop to the print region first, fallbacks only after a miss,
a deadline per item); grade.Grader turns a read into indicative ISO/IEC 15415/15416 process-control
grades. The tracker, verdicts and station live beside these modules.
"""
