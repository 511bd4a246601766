"""The grader's figures stay exactly what they were when its arithmetic was made cheaper (the gradecost
work: fewer array passes and matrix products per item). The table below was computed ONCE with the
grader and decoder as they stood before that change (main at b02911d) and written in here; it is not
recomputed. Every overall grade and parameter grade must match it exactly, and every value to 1e-9
(summation order may move the last bits of a float, never a grade). The cases span QR, DataMatrix,
GS1 DataMatrix and Code 128 at two module sizes, clean and with each simulated defect."""

from __future__ import annotations

import pytest

from agent.config.verify import CodeFormat, DecoderSettings, Grade
from agent.verify.decode import Decoder
from agent.verify.grade import Grader
from agent.verify.regions import Region
from drivers.sim.camera import Defect, Defects, SimCameraSettings, Symbology, render

TEXTS = {
    "qr": "https://id.example.com/01/09506000134352/21/7XK29F4TQ2M8/10/B1",
    "datamatrix": "HTTPS://QR.EXAMPLE.CN/Q/7XK29F4TQ",
    "gs1_datamatrix": "(01)09506000134352(21)000000042",
    "code128": "ABC-1234567",
}
Row = tuple[str, int, str | None, float, str, tuple[tuple[str, float | None, str], ...]]
# (symbology, module px, defect, severity, overall grade, ((parameter, value, grade), ...)); the frame's
# render seed is the row's index. Computed with the pre-change code; do not regenerate with the new one.
EXPECTED: list[Row] = [
    ('qr', 4, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 3.86544486569e-26, 'A'), ('grid non-uniformity', 5.77933118915e-24, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.924140334129, 'A'),
        ('axial non-uniformity', 0.000234924371983, 'A'), ('grid non-uniformity', 0.0564199779157, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'motion_blur', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.594059348106, 'A'),
        ('axial non-uniformity', None, 'A'), ('grid non-uniformity', None, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'noise', 0.55, 'A', (
        ('symbol contrast', 0.996078431373, 'A'), ('modulation', 0.596602976322, 'A'),
        ('axial non-uniformity', 0.000109245289048, 'A'), ('grid non-uniformity', 0.0200438487582, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.961702823639, 'A'),
        ('axial non-uniformity', 0.00798917556953, 'A'), ('grid non-uniformity', 0.0542817364351, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.948403894901, 'A'),
        ('axial non-uniformity', 0.00353533712742, 'A'), ('grid non-uniformity', 0.104257883219, 'A'),
        ('tilt', 4.29945348499, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999999940395, 'A'),
        ('axial non-uniformity', 6.18903727621e-26, 'A'), ('grid non-uniformity', 5.66918945253e-24, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.741176470588, 'A'), ('modulation', 0.770226359367, 'A'),
        ('axial non-uniformity', 0.00460742376408, 'A'), ('grid non-uniformity', 0.269851787273, 'A'),
        ('tilt', 0.744350302751, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.771245479584, 'A'),
        ('axial non-uniformity', 0.00294613530925, 'A'), ('grid non-uniformity', 0.170718572239, 'A'),
        ('tilt', 0.25, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 4, 'partial', 0.55, 'F', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 7.23808079936e-05, 'A'), ('grid non-uniformity', 0.0550783450738, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.22, 'F'),
    )),
    ('qr', 6, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 3.86544486569e-26, 'A'), ('grid non-uniformity', 5.77933118915e-24, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.98182952404, 'A'),
        ('axial non-uniformity', 0.000155251318645, 'A'), ('grid non-uniformity', 0.0372986268022, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'motion_blur', 0.35, 'D', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.663043916225, 'A'),
        ('axial non-uniformity', 0.00284004829873, 'A'), ('grid non-uniformity', 0.640552453681, 'D'),
        ('tilt', 0.238716355797, 'A'), ('unused error correction', 0.55, 'B'),
    )),
    ('qr', 6, 'noise', 0.55, 'A', (
        ('symbol contrast', 0.921568627451, 'A'), ('modulation', 0.736140370369, 'A'),
        ('axial non-uniformity', 7.2734303035e-05, 'A'), ('grid non-uniformity', 0.00949415411433, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.994264662266, 'A'),
        ('axial non-uniformity', 0.000172142312129, 'A'), ('grid non-uniformity', 0.0297802077451, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.992371082306, 'A'),
        ('axial non-uniformity', 0.000304197690097, 'A'), ('grid non-uniformity', 0.0229887718152, 'A'),
        ('tilt', 3.78919597803, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999999940395, 'A'),
        ('axial non-uniformity', 6.18903727621e-26, 'A'), ('grid non-uniformity', 5.66918945253e-24, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.898650944233, 'A'),
        ('axial non-uniformity', 0.000854668242203, 'A'), ('grid non-uniformity', 0.0598256391136, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.95113325119, 'A'),
        ('axial non-uniformity', 0.00159106405396, 'A'), ('grid non-uniformity', 0.111217363569, 'A'),
        ('tilt', 0.166666666667, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('qr', 6, 'partial', 0.55, 'F', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 0.00660060682075, 'A'), ('grid non-uniformity', 0.0464726616136, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.22, 'F'),
    )),
    ('datamatrix', 4, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.999798417091, 'A'),
        ('axial non-uniformity', 6.91351749999e-06, 'A'), ('grid non-uniformity', 0.0161575199251, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.778402864933, 'A'),
        ('axial non-uniformity', 0.000529178605818, 'A'), ('grid non-uniformity', 0.04174024021, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'motion_blur', 0.35, 'B', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.425742536783, 'B'),
        ('axial non-uniformity', None, 'A'), ('grid non-uniformity', None, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'noise', 0.55, 'A', (
        ('symbol contrast', 1.0, 'A'), ('modulation', 0.584978580475, 'A'),
        ('axial non-uniformity', 4.62221745868e-06, 'A'), ('grid non-uniformity', 0.0111105968834, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.945467412472, 'A'),
        ('axial non-uniformity', 0.00195023458055, 'A'), ('grid non-uniformity', 0.0893522172859, 'A'),
        ('tilt', 0.351348695667, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.937624812126, 'A'),
        ('axial non-uniformity', 0.000806206111353, 'A'), ('grid non-uniformity', 0.0658592576095, 'A'),
        ('tilt', 4.2857323326, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999571621418, 'A'),
        ('axial non-uniformity', 7.71926175171e-06, 'A'), ('grid non-uniformity', 0.0160500003256, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.76862745098, 'A'), ('modulation', 0.825266361237, 'A'),
        ('axial non-uniformity', 0.00273982161852, 'A'), ('grid non-uniformity', 0.231200832846, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.750947356224, 'A'),
        ('axial non-uniformity', 0.000365955291306, 'A'), ('grid non-uniformity', 0.0865884769428, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 4, 'partial', 0.55, 'B', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.999672293663, 'A'),
        ('axial non-uniformity', 0.000201740596845, 'A'), ('grid non-uniformity', 0.0357365731909, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.6, 'B'),
    )),
    ('datamatrix', 6, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 0.000154566669908, 'A'), ('grid non-uniformity', 0.0518728203951, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.942229390144, 'A'),
        ('axial non-uniformity', 0.000429239959257, 'A'), ('grid non-uniformity', 0.0464801699437, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'motion_blur', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.77227717638, 'A'),
        ('axial non-uniformity', None, 'A'), ('grid non-uniformity', None, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'noise', 0.55, 'A', (
        ('symbol contrast', 0.921568627451, 'A'), ('modulation', 0.75328117609, 'A'),
        ('axial non-uniformity', 2.68623708442e-05, 'A'), ('grid non-uniformity', 0.0493841288937, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.992708384991, 'A'),
        ('axial non-uniformity', 0.000583676388173, 'A'), ('grid non-uniformity', 0.0406440665385, 'A'),
        ('tilt', 0.235896897536, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.991590499878, 'A'),
        ('axial non-uniformity', 0.00749161967517, 'A'), ('grid non-uniformity', 0.0247129775976, 'A'),
        ('tilt', 4.6921412525, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999999940395, 'A'),
        ('axial non-uniformity', 0.000159875758627, 'A'), ('grid non-uniformity', 0.0525416389973, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.916566550732, 'A'),
        ('axial non-uniformity', 0.000878658919327, 'A'), ('grid non-uniformity', 0.0864925139896, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.965387523174, 'A'),
        ('axial non-uniformity', 0.0033621465153, 'A'), ('grid non-uniformity', 0.0369816825371, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('datamatrix', 6, 'partial', 0.55, 'B', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 0.000256894807648, 'A'), ('grid non-uniformity', 0.0527704687373, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.6, 'B'),
    )),
    ('gs1_datamatrix', 4, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.999883055687, 'A'),
        ('axial non-uniformity', 0.00035847322673, 'A'), ('grid non-uniformity', 0.0145163650846, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.776967644691, 'A'),
        ('axial non-uniformity', 0.00196548167315, 'A'), ('grid non-uniformity', 0.0367314531355, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'motion_blur', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.502132117748, 'A'),
        ('axial non-uniformity', None, 'A'), ('grid non-uniformity', None, 'A'),
        ('tilt', 0.25, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'noise', 0.55, 'A', (
        ('symbol contrast', 0.941176470588, 'A'), ('modulation', 0.677616298199, 'A'),
        ('axial non-uniformity', 0.00948456065289, 'A'), ('grid non-uniformity', 0.109095774952, 'A'),
        ('tilt', 0.248275862069, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.95699262619, 'A'),
        ('axial non-uniformity', 0.00875101403835, 'A'), ('grid non-uniformity', 0.0718328003711, 'A'),
        ('tilt', 0.252484193318, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.961922883987, 'A'),
        ('axial non-uniformity', 0.0030866772225, 'A'), ('grid non-uniformity', 0.0328419865667, 'A'),
        ('tilt', 0.248168939086, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999770641327, 'A'),
        ('axial non-uniformity', 0.000366467323373, 'A'), ('grid non-uniformity', 0.0146052791817, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.752941176471, 'A'), ('modulation', 0.796206176281, 'A'),
        ('axial non-uniformity', 0.00070978987053, 'A'), ('grid non-uniformity', 0.154436930563, 'A'),
        ('tilt', 0.353536342016, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.759718954563, 'A'),
        ('axial non-uniformity', 0.00184933680694, 'A'), ('grid non-uniformity', 0.059769291618, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 4, 'partial', 0.55, 'C', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.999899864197, 'A'),
        ('axial non-uniformity', 0.000672676405371, 'A'), ('grid non-uniformity', 0.0564149065818, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.42, 'C'),
    )),
    ('gs1_datamatrix', 6, None, 0.0, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 0.00054435354073, 'A'), ('grid non-uniformity', 0.0332621434178, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'blur', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.938468873501, 'A'),
        ('axial non-uniformity', 0.00131382621038, 'A'), ('grid non-uniformity', 0.0265633393205, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'motion_blur', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.767326831818, 'A'),
        ('axial non-uniformity', None, 'A'), ('grid non-uniformity', None, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'noise', 0.55, 'A', (
        ('symbol contrast', 0.929411764706, 'A'), ('modulation', 0.717223882675, 'A'),
        ('axial non-uniformity', 0.0030957633644, 'A'), ('grid non-uniformity', 0.0859544999669, 'A'),
        ('tilt', 0.165895078266, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'rotation', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.991449832916, 'A'),
        ('axial non-uniformity', 0.00776671596233, 'A'), ('grid non-uniformity', 0.0680042947783, 'A'),
        ('tilt', 0.235985329531, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'perspective', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.991603970528, 'A'),
        ('axial non-uniformity', 0.00208233131878, 'A'), ('grid non-uniformity', 0.032249444446, 'A'),
        ('tilt', 1.22085486796, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'low_contrast', 0.55, 'D', (
        ('symbol contrast', 0.36862745098, 'D'), ('modulation', 0.999999940395, 'A'),
        ('axial non-uniformity', 0.000533778196041, 'A'), ('grid non-uniformity', 0.0335221418863, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'dot_matrix', 0.15, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.901343822479, 'A'),
        ('axial non-uniformity', 0.00295085928769, 'A'), ('grid non-uniformity', 0.0939710782555, 'A'),
        ('tilt', 0.166666666667, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'smear', 0.35, 'A', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 0.959283173084, 'A'),
        ('axial non-uniformity', 0.00423332290495, 'A'), ('grid non-uniformity', 0.0696015319588, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 1.0, 'A'),
    )),
    ('gs1_datamatrix', 6, 'partial', 0.55, 'C', (
        ('symbol contrast', 0.792156862745, 'A'), ('modulation', 1.0, 'A'),
        ('axial non-uniformity', 0.000725365000603, 'A'), ('grid non-uniformity', 0.0382867276962, 'A'),
        ('tilt', 0.0, 'A'), ('unused error correction', 0.42, 'C'),
    )),
    ('code128', 2, None, 0.0, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'blur', 0.15, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'motion_blur', 0.35, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'noise', 0.55, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'rotation', 0.15, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'low_contrast', 0.55, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'smear', 0.35, 'F', (
        ('decode', None, 'F'),
    )),
    ('code128', 2, 'partial', 0.55, 'F', (
        ('decode', None, 'F'),
    )),
]


@pytest.mark.parametrize("seed", range(len(EXPECTED)))
def test_grades_match_the_table_from_before_the_speed_up(seed: int) -> None:
    sym, px, kind, severity, overall, params = EXPECTED[seed]
    cam = SimCameraSettings(symbology=Symbology(sym), module_px=px)
    defects = Defects.of(Defect(kind), severity) if kind else Defects()
    image = render(TEXTS[sym], defects, seed, cam).image
    decoder = Decoder(DecoderSettings(region=Region.of(cam.region), deadline_ms=None,
                                      formats=[CodeFormat.QR, CodeFormat.DATAMATRIX, CodeFormat.CODE128]))
    report = Grader().grade_result(image, decoder.decode(image))[0]
    assert report.overall is Grade(overall)
    assert [(p.name, p.grade.value) for p in report.parameters] == [(n, g) for n, _, g in params]
    for p, (name, value, _) in zip(report.parameters, params, strict=True):
        if value is None:
            assert p.value is None, name
        else:
            assert p.value == pytest.approx(value, rel=1e-9, abs=1e-9), name
