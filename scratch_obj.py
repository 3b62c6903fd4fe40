import sys, numpy as np
from tom_mma_broker.classifier import load_model, datasets, training, features
m = load_model("/tmp/kn_try/kilonova-v2.skops")
real = datasets.load_alerce_sne()
cls, obs = real[sys.argv[1]]
obs=sorted(obs,key=lambda o:o.mjd)
r = training.replay(m, obs)
t0=None
for end, d, s, c in r:
    o=obs[end-1]
    print(f"{d:7.2f} {o.band} {o.magnitude:6.2f} {'UL' if o.upper_limit else '  '} {s:.3f} {c}")
    if c:
        f=features.extract_features(obs[:end]); print({k:round(v,3) for k,v in f.items() if v==v}); break
