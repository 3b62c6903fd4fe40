import logging, time, json, sys
logging.basicConfig(level=logging.INFO)
from tom_mma_broker.classifier import training
cfg = training.TrainingConfig(**json.loads(sys.argv[1]) if len(sys.argv)>1 else {})
t=time.perf_counter()
p = training.train_and_save("/tmp/kn_try", cfg)
print("total", time.perf_counter()-t)
m=json.load(open(p.with_suffix(".json")))
print(json.dumps(m["operating_point"]))
for k,v in m["metrics"]["synthetic_test"]["by_day"].items(): print(k, {a:b for a,b in v.items() if a!="passing_by_kind"}); print("   ", v["passing_by_kind"])
print(json.dumps(m["metrics"]["reliability_test"]))
