import numpy as np
from tom_mma_broker.classifier import synthetic
rng=np.random.default_rng(2)
t=np.array([0.5,1,2,3,5,7,10,14])
for fam in ("HN20","2comp"):
    for k in range(3):
        m,p=synthetic.kilonova_model(rng,fam)
        dm=5*np.log10(p['distance_mpc']*1e5)
        print(fam, {k:(round(v,2) if isinstance(v,float) else v) for k,v in p.items()})
        for b in "grizJK":
            print("  ",b, np.round(m(t,b)-dm,1))
