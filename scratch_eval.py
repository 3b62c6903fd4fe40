import sys, glob, numpy as np
from tom_mma_broker.classifier import load_model, datasets, training, features
from tom_mma_broker.classifier.features import GWContext
m = load_model(sys.argv[1] if len(sys.argv)>1 else "/tmp/kn_try/kilonova-v2.skops")
print(m.version, m.metadata["operating_point"]["threshold"], m.metadata["operating_point"]["threshold_gw"])
real = datasets.load_alerce_sne()
rng=np.random.default_rng(1)
n5=nfull=ngw=0; worst=[]
for oid,(cls,obs) in real.items():
    r=training.replay(m, obs)
    early=[x for x in r if x[1]<=5]
    p5=any(x[3] for x in early); pf=any(x[3] for x in r)
    n5+=p5; nfull+=pf
    hits=0
    for k in range(5):
        first=min(o.mjd for o in features.detections(obs))
        ctx=GWContext(first-rng.uniform(0.05,3), float(rng.choice([40,100,200])), 0.5)
        rr=training.replay(m, obs, ctx, until_days=5)
        hits+=any(x[3] for x in rr)
    ngw+=hits
    worst.append((max(x[2] for x in early), oid, cls, p5, pf, hits))
print("ALeRCE pass in first 5d:", n5, "/30; any time:", nfull, "/30; with mock GW ctx:", ngw, "/150")
for w in sorted(worst)[-6:]: print("   ", w)
okc = sorted(glob.glob("/work/shared/data/gw170817/okc/GW170817-*.json"))
obs = datasets.load_okc_photometry(okc)
print("AT2017gfo points", len(obs), "unused", features.unused_bands(obs))
for ctx in (None, GWContext(57982.528524, 40.0, 0.3)):
    r = training.replay(m, obs, ctx)
    first=[x for x in r if x[3]]
    print("ctx" if ctx else "noctx", "first candidate at day", round(first[0][1],3) if first else None, "npts", first[0][0] if first else None)
    for d in (0.5,1,1.5,2,3,5,10):
        sel=[x for x in r if x[1]<=d]
        if sel: print("    by day",d, "score", round(sel[-1][2],3), "cand", sel[-1][3], "frac cand so far", round(np.mean([x[3] for x in sel]),2))
dec=datasets.load_okc_photometry(["tests/data/classifier/GW170817-cowperthwaite.json"])
for ctx in (None, GWContext(57982.528524, 40.0, 0.3)):
    r = training.replay(m, dec, ctx)
    print("DECam", "ctx" if ctx else "noctx", [(round(x[1],2), round(x[2],2), x[3]) for x in r][:10])
