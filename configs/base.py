"""Shared base of the training configs; not a run of its own (the model configs override it).

Every field below is overridable from the command line, e.g.
`python -m experiments.train --config=configs/t3kan.py --config.train.steps=500
--config.model.width=64`.
"""

from ml_collections import config_dict

from configs import data


def get_config() -> config_dict.ConfigDict:
    """The defaults that every model config starts from."""
    config = config_dict.ConfigDict()
    # Run name: the default workdir is runs/<name>-s<seed> (plus a hash of model/data overrides).
    config.name = "base"
    # Seed of the parameter init and of the training batch order (the data has data.seed).
    config.seed = 0
    # Path of another run's workdir (or of its checkpoints/ or best/ folder) to take the initial
    # parameters from (params only, the optimizer starts fresh); "" = random initialisation.
    config.init_from = ""

    # The synthetic sequence task (fields documented in configs/data.py). The data is cheap, so
    # training uses more draws than the data config's default of 1000 rows.
    config.data = data.get_config()
    config.data.samples = 20000

    config.model = config_dict.ConfigDict()
    # Architecture: "ttt" (T3Lin / T3MLP / T3KAN), "transformer", "kansformer" or "kat".
    config.model.arch = "ttt"
    # Inner learner of the TTT layers: "linear", "mlp" or "kan" (used when arch="ttt").
    config.model.inner = "linear"
    # Outer block of the TTT models: "mamba" (conv + TTT + SwiGLU) or "transformer" (TTT + MLP).
    config.model.backbone = "mamba"
    # Vocabulary and context follow the data (vocab_size, and row length vocab_size // seq_step).
    config.model.vocab_size = config.data.get_ref("vocab_size")
    config.model.max_len = config.data.get_ref("vocab_size") // config.data.get_ref("seq_step")
    # Model width (D), number of blocks, attention / TTT heads (head width = width // num_heads).
    config.model.width = 64
    config.model.depth = 2
    config.model.num_heads = 4
    # SwiGLU hidden width = round(mlp_ratio * width), unless mlp_hidden > 0 gives it directly.
    config.model.mlp_ratio = 4.0
    config.model.mlp_hidden = 0
    # Tokens per TTT inner mini-batch (the paper's b).
    config.model.mini_batch_size = 16
    # Base inner learning rate of the TTT layers; unset = 1.0 for linear, 0.1 for mlp and kan.
    config.model.base_lr = config_dict.placeholder(float)
    # How a TTT mini-batch is computed: "dual" (fast, no per-token weights) or "primal" (reference).
    config.model.ttt_form = "dual"
    # B-spline KAN layers: grid intervals G, spline degree p, grid range [grid_min, grid_max].
    config.model.kan_grid_size = 5
    config.model.kan_degree = 3
    config.model.kan_grid_min = -1.0
    config.model.kan_grid_max = 1.0
    # Width of the causal depthwise convolutions (0 = none).
    config.model.conv_width = 4
    # RoPE base frequency.
    config.model.rope_theta = 10000.0
    # TTT layer: RoPE on its Q and K, and parameter-free RMS normalisation of Q and K per head
    # (|k|^2 = d, so each inner step writes an O(1) fraction of the value; the MQAR study's).
    config.model.ttt_rope = True
    config.model.ttt_qk_norm = False
    # TTT inner loop implementation: "xla" (a scan), "pallas" (fused GPU kernels for TTT-Linear's
    # dual form, t3kan_jax/ttt/pallas_linear.py; remat_every 0; per device on a mesh) or "auto"
    # (pallas where it applies on GPUs, else the scan).
    config.model.ttt_impl = "xla"
    # Checkpoint the TTT inner loop every this many mini-batches (0 = off); remat = recompute
    # every block in the backward pass. Both trade compute for memory at long context.
    config.model.remat_every = 0
    config.model.remat = False
    # Run the blocks as one scan over depth: the block is compiled once, not depth times (use it
    # when deep models compile slowly). The same function, but another random init for the same
    # seed (the scan splits the key per layer), and the parameters sit under "blocks" with a
    # leading depth axis instead of block_0, block_1, ...: checkpoints of the two layouts are not
    # interchangeable (t3kan_jax.models.blocks.stack_block_params / unstack_block_params convert).
    config.model.scan_layers = False
    # Compute dtype ("float32" or "bfloat16"; TTT inner loops stay float32) and parameter dtype.
    config.model.dtype = "float32"
    config.model.param_dtype = "float32"
    # Attention backend of jax.nn.dot_product_attention: "auto", "xla" or "cudnn" (bfloat16, GPU).
    config.model.attention_impl = "auto"
    # Standard deviation of the normal init of embeddings and Dense kernels.
    config.model.init_std = 0.02
    # Inner optimizer of the TTT layers (docs/inner_optimizers.md): "sgd" (mini-batch TTT),
    # "titans" (momentum + forgetting, the Titans memory as a layer) or "lact" (large-chunk TTT
    # plus sliding-window attention; the chunk is mini_batch_size, inner may be "swiglu").
    config.model.ttt_optimizer = "sgd"
    # Titans gate biases at init: momentum eta = sigmoid(bias) (0 -> 0.5), forgetting alpha
    # (-4 -> 0.018 per token).
    config.model.titans_momentum_bias = 0.0
    config.model.titans_forget_bias = -4.0
    # LaCT: Muon-orthogonalised chunk updates, fast-weight renormalisation, window attention
    # span in tokens (0 = none), SwiGLU fast-weight hidden width / head dim.
    config.model.lact_muon = True
    config.model.lact_renorm = True
    config.model.lact_window = 2048
    config.model.lact_hidden_ratio = 1
    # Size preset: "tiny" uses the fields above; "125m", "350m", "760m", "1.3b" fix width, depth,
    # num_heads and mlp_hidden (the official TTT-LM sizes).
    config.model.size = "tiny"

    config.train = config_dict.ConfigDict()
    # Optimizer steps (one batch each).
    config.train.steps = 600
    # Global batch size; must be a multiple of the number of devices in the mesh.
    config.train.batch_size = 32
    # Peak AdamW learning rate, reached after warmup_steps of linear warmup from 0.
    config.train.learning_rate = 3e-3
    config.train.warmup_steps = 30
    # Cosine decay from the peak to learning_rate * end_lr_ratio at the last step.
    config.train.end_lr_ratio = 0.1
    # AdamW decoupled weight decay, applied to matrices and tensors only (not to biases / scales).
    config.train.weight_decay = 0.01
    # AdamW moment decay rates.
    config.train.b1 = 0.9
    config.train.b2 = 0.95
    # Clip the gradient's global norm to this value (0 = no clipping).
    config.train.grad_clip = 1.0
    # Evaluate on the validation split every this many steps (and at the last step).
    config.train.eval_every = 100
    # Batch size of evaluation; must be a multiple of the number of devices in the mesh.
    config.train.eval_batch_size = 256
    # Early stopping: stop after `patience` evaluations without the validation loss improving by
    # more than min_delta (patience 0 = never stop early).
    config.train.patience = 5
    config.train.min_delta = 1e-4
    # Save a checkpoint every this many steps (also at the end and on SIGINT / SIGTERM).
    config.train.checkpoint_every = 100
    # Number of recent checkpoints to keep (the best-by-validation one is kept apart, in best/).
    config.train.keep_checkpoints = 2
    # Write a train metrics row (means over the last log_every steps) every this many steps.
    config.train.log_every = 25

    config.mesh = config_dict.ConfigDict()
    # Device mesh: "data" splits the batch, "fsdp" splits each parameter's largest divisible
    # dimension (and the batch too). data=-1 uses all devices left over by fsdp.
    config.mesh.data = -1
    config.mesh.fsdp = 1
    return config
