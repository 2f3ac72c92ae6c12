"""The metadata_stamping node (contract: contracts/metadata_stamping.yaml)."""
