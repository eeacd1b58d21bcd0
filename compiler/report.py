"""The compile report: what each pass did, which kernels exist, how memory was planned.

Plain data (it travels inside ProgramSpec as a dict), with a readable table
for people and JSON for tools. Items are reachable as attributes
(``rep.kernels``) and, for older callers, as keys (``rep["kernels"]``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class CompileReport:
    passes: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    jit: dict = field(default_factory=dict)
    program_cache: dict = field(default_factory=dict)  # "hit": None, "memory" or "disk"

    @property
    def total_seconds(self):
        return sum(p["seconds"] for p in self.passes) + self.jit.get("seconds", 0.0)

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self):
        return asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: d[k] for k in ("passes", "kernels", "memory", "jit", "program_cache")
                     if k in d})

    def __str__(self):
        lines = ["passes:", "  %-34s %8s %8s %9s" % ("name", "before", "after", "ms")]
        for p in self.passes:
            lines.append("  %-34s %8d %8d %9.2f" % (p["name"], p["nodes_before"], p["nodes_after"], p["seconds"] * 1e3))
        if self.jit:
            lines.append("  %-34s %8s %8s %9.2f%s" % ("llvm_jit", "", "", self.jit.get("seconds", 0.0) * 1e3,
                                                    "  (disk cache hit)" if self.jit.get("cache_hit") else ""))
        if self.program_cache.get("hit"):
            lines.append("  (program from the %s cache: no pass ran)" % self.program_cache["hit"])
        lines.append("kernels (%d):" % len(self.kernels))
        for k in self.kernels:
            lines.append("  %-40s %-6s %s" % (k["name"], k["backend"], " ".join(k["ops"])))
        if self.memory:
            m = self.memory
            lines.append("memory: arena %s bytes, naive %s bytes, in-place %s, reused %s, aliased %s"
                         % (m.get("arena_bytes"), m.get("naive_bytes"), m.get("inplace"), m.get("reused"),
                            m.get("aliased", 0)))
        lines.append("total compile seconds: %.3f" % self.total_seconds)
        return "\n".join(lines)
