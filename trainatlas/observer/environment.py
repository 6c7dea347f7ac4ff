"""What ``run.json`` says about where and what ran: environment, model tree, optimizer."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

MAX_MODULES = 400


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv[:20],
        "cwd": os.getcwd(),
        "git_commit": git_commit(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda_available"] = bool(torch.cuda.is_available())
        env["cuda"] = torch.version.cuda
        if env["cuda_available"]:
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def git_commit(cwd: str | None = None) -> str | None:
    """The commit of the repository the script runs in, if any (and git is installed)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def model_summary(model: Any, optimizer: Any = None) -> dict[str, Any]:
    """The module tree with parameter counts (the first ``MAX_MODULES`` modules): for each module
    its own parameters, how many of them are trainable and how many the optimizer updates."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    in_optimizer = None
    if optimizer is not None:
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    modules = []
    for name, module in model.named_modules():
        if len(modules) >= MAX_MODULES:
            break
        own = list(module.parameters(recurse=False))
        entry = {
            "name": name or "(root)",
            "type": type(module).__name__,
            "params": sum(p.numel() for p in module.parameters()),
            "own_params": sum(p.numel() for p in own),
            "own_trainable": sum(p.numel() for p in own if p.requires_grad),
        }
        if in_optimizer is not None:
            entry["own_in_optimizer"] = sum(p.numel() for p in own if id(p) in in_optimizer)
        modules.append(entry)
    return {
        "type": type(model).__name__,
        "params": total,
        "trainable_params": trainable,
        "optimized_params": None
        if in_optimizer is None
        else sum(p.numel() for p in model.parameters() if id(p) in in_optimizer),
        "modules": modules,
        "modules_truncated": len(modules) >= MAX_MODULES,
    }


def optimizer_summary(optimizer: Any) -> dict[str, Any]:
    groups = []
    for group in optimizer.param_groups:
        hyper = {k: _plain(v) for k, v in group.items() if k != "params"}
        hyper["param_count"] = sum(p.numel() for p in group["params"])
        hyper["tensors"] = len(group["params"])
        groups.append(hyper)
    return {"type": type(optimizer).__name__, "param_groups": groups}


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "numel", lambda: 2)() == 1:
        return value.item()
    return repr(value)
