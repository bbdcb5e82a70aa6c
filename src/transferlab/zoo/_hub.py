"""The Hugging Face hub, asked once per process whether it can be reached.

Without a network, huggingface_hub retries every file it looks for (five times, with back-off: about a minute and 50
log lines per model) before it fails. Before the first hub download, :func:`hub_offline` sends one request with a short
timeout and no retries; when nothing answers, huggingface_hub is put in offline mode for the rest of the process (as
``HF_HUB_OFFLINE=1`` would): models in the local cache still load, a model missing from it fails at once, with one
message that says why (:func:`hub_hint`)."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
PROBE_SECONDS = 3.0  # one connection attempt; the hub answers a HEAD in well under a second where it is reachable
_probed: dict[str, bool] = {}  # endpoint -> reachable (one probe per process)


def hub_offline() -> bool:
    """True when the hub is not to be asked: ``HF_HUB_OFFLINE`` is set, or the hub did not answer the probe (then
    offline mode is switched on, here and in the child processes started later; ``-v`` logs it once)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return True
    endpoint = constants.ENDPOINT
    if endpoint not in _probed:
        _probed[endpoint] = _reachable(endpoint)
        if not _probed[endpoint]:
            log.info("the Hugging Face hub (%s) cannot be reached: models load from the local cache only", endpoint)
    if not _probed[endpoint]:
        constants.HF_HUB_OFFLINE = True  # read at each request by huggingface_hub (and so transformers and timm)
        os.environ["HF_HUB_OFFLINE"] = "1"  # data loader workers and other children
        return True
    return False


def hub_hint(local: str = "a local directory") -> str:
    """What to do when a hub model cannot be loaded, after the reason it could not be; ``local``: the local
    alternative (``local weights as timm:NAME@/path/model.safetensors``)."""
    from huggingface_hub import constants

    if _probed.get(constants.ENDPOINT) is False:
        return (f"the hub ({constants.ENDPOINT}) cannot be reached from here and the model is not in the local cache: "
                f"give {local}, or download it where there is a network")
    if constants.is_offline_mode():
        return f"HF_HUB_OFFLINE is set and the model is not in the local cache: give {local}, or unset HF_HUB_OFFLINE"
    return f"check the model's name and your network, or give {local}"


def _reachable(endpoint: str) -> bool:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=PROBE_SECONDS)  # any answer, an error status included, is the hub
    except Exception as exc:  # noqa: BLE001  (a refused connection, a failed name lookup, a timeout, a proxy error)
        log.debug("hub probe of %s failed: %r", endpoint, exc)
        return False
    return True
