"""The OpenAPI schemas of msgspec Structs, completed with what Litestar leaves out of them.

Litestar documents a Struct's fields but not two rules msgspec enforces on request bodies:
`forbid_unknown_fields` (an unknown field is a 400) and the constraints of list items
(`list[Symbol]` loses the ticker pattern). Without them the document accepts bodies the API
refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Schema

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's Struct schema, plus `additionalProperties: false` and list-item string rules."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if not isinstance(info, msgspec.inspect.StructType):
            return schema
        if info.forbid_unknown_fields:
            schema.additional_properties = False
        for field in info.fields:
            items = _item_rules(field.type)
            prop = (schema.properties or {}).get(field.encode_name)
            if items is not None and isinstance(prop, Schema) and isinstance(prop.items, Schema):
                prop.items.pattern = items.pattern
                prop.items.min_length = items.min_length
                prop.items.max_length = items.max_length
        return schema


def _item_rules(t: msgspec.inspect.Type) -> msgspec.inspect.StrType | None:
    """The string rules of a list's items (`list[Annotated[str, Meta(...)]]`), if any."""
    if isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, msgspec.inspect.ListType) and isinstance(t.item_type, msgspec.inspect.StrType):
        return t.item_type
    return None
