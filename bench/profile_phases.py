"""Where one frame's time goes: prefill, talker step, code predictor, int4 0.6B, x-vector vs ICL.

Usage: ``.venv/bin/python bench/profile_phases.py`` (20 frames, our decode loop only, no codec).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import time

from bench_synthesis import REF, REF_TEXT, TEXT

from personalization_engine.audio_io import load_audio
from personalization_engine.tts.engine import DecodeStats
from personalization_engine.tts.model import load_model
from personalization_engine.tts.options import GenerateOptions

m = load_model("/work/cache/full-0.6b", device="cpu", quant=sys.argv[1] if len(sys.argv) > 1 else "int4")
s, sr = load_audio(REF, sample_rate=24000)
for mode, tr in (("xvector", None), ("icl", REF_TEXT)):
    v = m.create_voice((s, sr), transcript=tr, analyze=False)
    for rep in range(2):
        plan = m._plan(TEXT, GenerateOptions(seed=0, max_new_frames=20, min_new_frames=20))
        inputs = m._clone_inputs(plan.segments[0].text, plan.language, prompt=m._prompt_for(v))
        st = DecodeStats()
        t = time.perf_counter()
        for _ in m._segment_frames(inputs, plan, 20, 0, st):
            pass
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(mode, rep, f"wall {time.perf_counter() - t:.2f} prompt {st.prompt_len} prefill {st.prefill_s:.2f} s, "
              f"talker {1000 * st.talker_s / st.talker_steps:.0f} ms/step, "
              f"predictor {1000 * st.predictor_s / st.frames:.0f} ms/frame", load, flush=True)
