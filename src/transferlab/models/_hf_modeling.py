"""transferlab's text classifier as a transformers model: the encoder, transferlab's pooling, one linear classifier.

transferlab writes this file, as ``modeling_transferlab.py``, into every text model folder whose weights are a whole
network (a fit or a merge), and names it in ``config.json``'s ``auto_map``, so that

    AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

builds this class and ``model(**tokenizer(texts, padding=True, return_tensors="pt")).logits`` are the model's own
logits. No class of transformers itself pools this way: BERT's classifies its pooler's output (``tanh(dense(h[CLS]))``,
a layer transferlab drops), while transferlab averages the encoder's last hidden states over the tokens (padding
excluded) or takes the first token's, as ``config.json``'s ``transferlab`` entry says (``pooling``: ``mean`` or
``cls``; ``normalize``: L2-normalised or not). Without ``trust_remote_code`` transformers builds its own class from
the same weights (its pooler newly initialised, so its predictions are not this model's); ``AutoModel`` opens the
fine-tuned encoder without this file.

The module names are transformers' (the encoder under ``base_model_prefix``, ``classifier``), so
``model.safetensors`` loads as it is, and a peft adapter saved by transferlab loads over this class built on its
base: ``PeftModel.from_pretrained(TransferlabForSequenceClassification.from_pretrained(BASE, config=config), DIR)``.
It needs torch and transformers only. (In transferlab's source tree it is ``models/_hf_modeling.py``, never imported
there; the two constants below are set for the folder's encoder when it is written.)
"""

import torch
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

MODEL_TYPE = "bert"
ENCODER = "bert"


class TransferlabForSequenceClassification(PreTrainedModel):
    """``classifier(dropout(pool(encoder(input_ids, attention_mask))))``, the pooling from ``config.transferlab``."""

    config_class = CONFIG_MAPPING[MODEL_TYPE]
    base_model_prefix = ENCODER

    def __init__(self, config):
        super().__init__(config)
        encoder = AutoModel.from_config(config)
        if getattr(encoder, "pooler", None) is not None:  # unused by this model's pooling (not in its weights)
            encoder.pooler = None
        setattr(self, ENCODER, encoder)
        opts = dict(getattr(config, "transferlab", None) or {})
        self.pooling = opts.get("pooling", "mean")
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"transferlab pooling must be 'mean' or 'cls', got {self.pooling!r}")
        self.normalize = bool(opts.get("normalize", False))
        self.dropout = torch.nn.Dropout(float(opts.get("dropout", 0.1)))
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        getattr(self, ENCODER)._init_weights(module)

    def pool(self, hidden, attention_mask):
        """The sentence vector transferlab trained on: the mean over the tokens (padding excluded) or the first
        token's hidden state, L2-normalised where the model was."""
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, return_dict=None,
                **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = getattr(self, ENCODER)(input_ids=input_ids, attention_mask=attention_mask, **extra)
        logits = self.classifier(self.dropout(self.pool(out.last_hidden_state, attention_mask)))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)
