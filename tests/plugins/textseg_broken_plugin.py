"""A plugin module that fails to import (tests that a broken plugin is reported, not fatal)."""

raise ImportError("this plugin needs a package that is not installed (on purpose)")
