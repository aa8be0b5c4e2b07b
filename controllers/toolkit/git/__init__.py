"""The git layer: URLs, refs, credentials and the fetch of one ref, shared by the source
controller and the CLI (`headwater diff --ref`)."""
