"""The Kustomization build: generated kustomization, kustomize build, postBuild
substitution and commonMetadata, shared by the kustomize controller and the CLI
(`headwater diff`)."""
