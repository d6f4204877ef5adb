"""GET /v1/models: the served model, its context window, abilities and infilling token ids."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from ..openapi import documented
from ..protocol.common import ModelCard, ModelList
from ..state import ServerState


class ModelsController(Controller):
    path = "/v1/models"
    tags = ["OpenAI"]

    @get("/", summary="List the served model", **documented((401, 500)))
    async def list_models(self, serving: NamedDependency[ServerState]) -> ModelList:
        return ModelList([serving.model_card()])

    @get("/{model:str}", summary="Describe a model", **documented((400, 401, 404, 500)))
    async def retrieve_model(self, model: FromPath[str], serving: NamedDependency[ServerState]) -> ModelCard:
        serving.check_model(model)
        return serving.model_card()
