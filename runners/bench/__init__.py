"""Cost benchmark: time per training step, per-phase breakdown and memory of every optimizer,
relative to SGD-m measured in the same process.

    python -m runners.bench [--problems mnist_ae,resnet32,vgg16_bn] [--optimizers ...]
                            [--schedule paper | every-step | T1/T2] [--rounds 5]
                            [--device cpu | cuda | auto] [--threads N] [--out DIR]
    make bench

For each problem (runners.bench.problems: the MNIST autoencoder at batch 1000, ResNet-32 and
VGG16-BN at batch 128, on synthetic inputs of the right shape) every optimizer is built from
its conf/optimizer/<name>.yaml through the runner, on its own copy of the same initial model,
with the papers' schedule for that model (statistics/inverses every 1/20 steps for the
autoencoders, 10/100 for the CNNs) or the one asked for, and no warm start. After a warm-up,
rounds interleave the optimizers; each round times one step of each kind of step an
optimizer's schedule has (refresh, statistics, plain) and weights them by how often the
schedule takes them (runners.bench.timing). Reported per optimizer: the median time per step
and its ratio to SGD-m's, the spread over rounds, the time per phase (forward_backward,
statistics, inversion, preconditioning, update), the time of each kind of step, optimizer
state bytes and the peak memory (CUDA max allocated; on CPU the process's peak resident set
during its steps, which includes everything the process holds). Also the harness overhead:
the runner's time per step against a bare PyTorch loop (runners.bench.overhead).

Output: a markdown table per problem on stdout and in DIR/bench.md (with the command and
the environment), DIR/bench.csv, and DIR/phases.png, a stacked bar chart of the per-phase
cost of each optimizer relative to SGD-m. `--optimizers` takes the names of conf/optimizer/
(`--help` lists them). The start and the end of each problem, with its seconds, are logged
(INFO, logger runners.bench.run, on stderr), so a long benchmark is never silent.
"""

from runners.bench.run import BenchSettings, benchmark, main

__all__ = ["BenchSettings", "benchmark", "main"]
