"""The project's own error types: every user mistake surfaces as one of these."""

from __future__ import annotations


class SpikeDistillError(Exception):
    """Base class of every error raised on purpose by spikedistill."""


class ConfigError(SpikeDistillError, ValueError):
    """An invalid option, argument or configuration value."""


class UnknownNameError(ConfigError, KeyError):
    """A name (model, method, dataset, preset, ...) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(SpikeDistillError):
    """Missing, corrupt or mismatching data files (bad format, size or checksum)."""


class CheckpointError(SpikeDistillError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


class NonFiniteError(SpikeDistillError, FloatingPointError):
    """A NaN or infinity where the run needs finite values (weights, statistics)."""


class NonFiniteLossError(NonFiniteError):
    """A NaN or infinite training loss (more than ``train.skip_nonfinite`` times)."""


class StoppedError(SpikeDistillError):
    """A run stopped on request (SIGTERM, Ctrl-C), its state saved for resume."""

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum  # as if the signal had ended it: schedulers read it so


class RankError(SpikeDistillError):
    """An error of one process under torchrun during training, where it may be that process's
    alone (its shard of the data): the CLI prints it from every rank, naming the rank."""

    def __init__(self, rank: int, error: BaseException) -> None:
        super().__init__(f"rank {rank}: {error}")
        self.rank, self.error = rank, error


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def described(err: BaseException) -> str:
    """``Type: first line`` of an error: another library's or your own code's, quoted in ours."""
    return f"{type(err).__name__}: {first_line(err)}"


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA, CPU allocator or Python)."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def backward_error(err: RuntimeError) -> Exception:
    """``err``, or what to do when the student kept autograd state from the batch before (a
    neuron's membrane: snnTorch's ``init_hidden=True`` neurons, not reset in ``forward``)."""
    if "backward through the graph a second time" not in str(err):
        return err
    return ConfigError(
        "the student keeps state from the batch before (a neuron's membrane, as snnTorch's "
        "init_hidden=True neurons do): reset it at the start of its forward "
        "(snntorch.utils.reset(self); SpikingJelly: functional.reset_net(self), or wrap the net "
        "by spikedistill.interop.spikingjelly.as_student, which resets it)"
    )
