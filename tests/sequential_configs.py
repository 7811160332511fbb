"""Small, fast hyper-parameters of each diffusion model, shared by its own tests and tests/test_models.py."""

DREAMREC_SMALL = {"hidden_size": 32, "inner_size": 32, "diffusion_steps": 50}
PREFERDIFF_SMALL = {"hidden_size": 32, "inner_size": 32, "diffusion_steps": 50, "learning_rate": 0.005}
DIFFUREC_SMALL = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 2}
DIFFREC2_SMALL = {"hidden_size": 32, "inner_size": 64, "diffusion_steps": 50, "learning_rate": 0.005}
DIMEREC_SMALL = {"hidden_size": 32, "denoiser_hidden_size": 64, "diffusion_steps": 50, "n_negatives": 20}
DIQDIFF_SMALL = {
    "hidden_size": 32,
    "inner_size": 64,
    "n_layers": 1,
    "n_heads": 2,
    "num_codes": 4,
    "diffusion_steps": 8,
    "learning_rate": 0.005,
}
DIFFDIV_SMALL = {
    "hidden_size": 32,
    "inner_size": 32,
    "latent_size": 32,
    "diffusion_steps": 50,
    "learning_rate": 0.005,
}
DIFFREC_SMALL = {"dims_dnn": [64], "steps": 10}
LDIFFREC_SMALL = {
    "train_batch_size": 32,
    "learning_rate": 0.005,
    "steps": 10,
    "pretrain_epochs": 20,
    "eval_batch_size": 100000,
}
DDRM_SMALL = {
    "eval_batch_size": 100000,
    "pretrain_batch_size": 256,
    "pretrain_learning_rate": 0.01,
    "pretrain_epochs": 20,
    "train_batch_size": 256,
    "steps": 5,
    "sampling_steps": 5,
    "dims_dnn": [64],
}
ADREC_SMALL = {
    "hidden_size": 32,
    "inner_size": 64,
    "n_layers": 1,
    "denoiser_layers": 1,
    "n_heads": 2,
    "diffusion_steps": 8,
    "pretrain_epochs": 5,
    "freeze_epochs": 1,
    "train_batch_size": 64,
    "learning_rate": 0.005,
}
