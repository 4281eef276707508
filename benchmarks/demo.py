"""The main job's results, committed: `selfsup demo` written to benchmarks/results/demo/.
Usage: python benchmarks/demo.py  (same as `selfsup demo --out benchmarks/results/demo`)."""
from selfsup.demo import markdown, run_demo

if __name__ == "__main__":
    result = run_demo("benchmarks/results/demo", progress=False)
    print(markdown(result["table"], result["runs"]))
    print(f"total {result['seconds']:.0f} s")
