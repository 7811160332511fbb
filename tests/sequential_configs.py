"""Small, fast hyper-parameters of each sequential diffusion model, shared by its own tests and the common ones."""

DREAMREC_SMALL = {"hidden_size": 32, "inner_size": 32, "diffusion_steps": 50}
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
