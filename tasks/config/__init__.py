"""Typed pipeline configuration: the schema, and its loading/validation from ``params.yaml``."""

from tasks.config.load import ConfigError, from_dict, load_config
from tasks.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "from_dict"]
