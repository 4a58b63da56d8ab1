"""``dfer predict``: the emotion distribution over the time of any video or still image.

Without ``--run`` or ``--checkpoint`` it uses the face-expression model that ships inside
dfer (:mod:`dfer.pretrained`: a ResNet-18 over one grey frame, trained on FER+'s eight
classes), so ``dfer predict VIDEO`` works right after ``pip install``; in Python,
:func:`predict_video` (``dfer.predict_video``) does the same and returns the report.

The MIDAS paper (Kawamura et al., Sec. 4.1 and 4.3) classifies a clip from 8 frames, one
per equal segment (TSN sampling), of the face detected and aligned by an affine transform.
This command applies a trained model the same way to every stretch of a user's video:

1. **Faces**: decode (PyAV), detect (RetinaFace) on every ``detect_every``-th frame,
   link, fill and smooth one face track, and align every frame a window samples to the
   256x256 template of ``dfer preprocess`` (:func:`dfer.preprocess.track.faces_from_frames`); then the
   run's test-time transform (:func:`dfer.data.transforms.build_transforms` with
   ``train=False``: short side to ``size``, centre crop, ImageNet normalisation). The
   shipped FER+ model saw FER2013's tight grey crops, so for it (and only for a model that
   asks, :func:`input_transform`) the aligned face is first cut to its centred
   ``face_crop`` fraction and turned grey (ITU-R 601 luma, three equal channels).
2. **Windows**: a window covers ``window_seconds`` of video, ``L = round(window_seconds
   * fps)`` frames, sampled into the model's ``num_frames`` frames exactly as the test
   clips of training (:class:`dfer.data.sampling.SegmentSampler`, segment centres; a
   window shorter than ``num_frames`` repeats frames evenly). Windows start every
   ``stride`` frames (default ``L``: each frame belongs to one window); when the last
   window would run past the end, one more window is placed so that it ends on the last
   frame, so every frame is covered and every window has the same length. A video shorter
   than ``L`` is one window over all its frames; a still image is a one-frame clip
   repeated ``num_frames`` times (one window).
3. **Classes**: windows are batched through the model (:func:`dfer.inference.clip_probabilities`);
   each window's softmax is its distribution over the classes. A decoded and aligned
   frame is transformed once and shared by every window that samples it; frames no
   remaining window needs are dropped, so memory stays bounded by one window's frames
   (plus the raw-frame cache of ``faces_from_frames``).

Only what a window uses is computed: a decoded frame is converted to RGB only when the
detector looks at it or a window samples it (:class:`dfer.preprocess.video.DecodedFrame`;
the conversion costs more than the decoding), only sampled frames are warped to the
template, and the model runs in channels-last layout (:func:`dfer.inference.channels_last`).
None of this changes the report beyond the float rounding of the forward pass.

Frames where the track is not really there (``FrameSource.FILLED``: before the face
appears, after it leaves) are "no face" frames: a window's ``face_found`` is the fraction
of its frames (all frames of its span, not only the sampled ones) with a face, and a
window below ``min_face`` gets no distribution (``null`` in JSON, empty cells in CSV, a gap
in the timeline) instead of a guess from a stale crop.

Outputs per input ``X`` in ``--out`` (default ``./predictions``): ``X.json`` (everything),
``X.csv`` (one row per window) and ``X.png`` (stacked probabilities over time with the
no-face frames shaded; not written for a still image). One line per input on stdout.

Exit codes: 0 when at least one input was predicted; 2 when none was (every input had no
face or failed to decode; each is reported on its own line) or the arguments are bad
(missing file, unsupported extension, not a run directory, bad option values), which
stop the command before any input is processed.
"""

from dfer.predict.bundle import ModelBundle, input_transform, load_model, load_pretrained
from dfer.predict.cli import add_arguments, run
from dfer.predict.faces import make_detector
from dfer.predict.outputs import claim_output_folder, summary_line, timeline_steps, write_outputs
from dfer.predict.report import predict_file, predict_video
from dfer.predict.settings import PredictConfig
from dfer.predict.windows import WindowPlan, no_face_spans, plan_windows, window_length
from dfer.preprocess.face import ALIGN_SIZE

__all__ = ["PredictConfig", "WindowPlan", "window_length", "plan_windows", "no_face_spans", "ModelBundle",
           "load_model", "load_pretrained", "input_transform", "make_detector", "predict_file", "predict_video",
           "claim_output_folder", "write_outputs", "timeline_steps", "summary_line", "ALIGN_SIZE",
           "add_arguments", "run"]
