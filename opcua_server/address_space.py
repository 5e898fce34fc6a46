"""The address space, generated from the tag registry.

    Objects/<site>/<module>/<tag>              plant tags (AnalogItem, MultiStateDiscrete, ...)
    Objects/<site>/Simulation/<module>/<tag>   the twin's ground truth, simulation only
    Objects/<site>/Commands/<method>           start, stop, reset, faults (see `methods`)

NodeIds are stable strings in the server's namespace: `<site>.<module>.<tag>` for plant tags,
`<site>.Simulation.<module>.<tag>` for ground truth, `<node>.EURange` and so on for properties.
Nodes are added in one batch through the internal session, because 5,000 tags added one
`add_variable` call at a time take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from asyncua import Server, ua

from core.tags import Access, DataType, Tag

SIMULATION = "Simulation"
COMMANDS = "Commands"
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
SIMULATION_NOTE = (
    "SIMULATION ONLY: the digital twin's ground truth, which no real plant can measure. "
    "For scoring KPIs and tests; never use it for control."
)

#: OPC UA data type, variant type and Python conversion of each registry data type.
_TYPES: dict[DataType, tuple[int, ua.VariantType, Callable[[Any], Any]]] = {
    DataType.FLOAT: (ua.ObjectIds.Double, ua.VariantType.Double, float),
    DataType.INT: (ua.ObjectIds.Int64, ua.VariantType.Int64, int),
    DataType.BOOL: (ua.ObjectIds.Boolean, ua.VariantType.Boolean, bool),
    DataType.ENUM: (ua.ObjectIds.UInt32, ua.VariantType.UInt32, int),
}


@dataclass(frozen=True, slots=True)
class TagNode:
    """One tag's variable node, and how its values are encoded."""

    tag: Tag
    nodeid: ua.NodeId
    variant_type: ua.VariantType
    convert: Callable[[Any], Any]

    def variant(self, value: Any) -> ua.Variant:
        return ua.Variant(self.convert(value), self.variant_type)


@dataclass(frozen=True, slots=True)
class PlantNodes:
    """The nodes built for one site, by tag id and by NodeId."""

    namespace: int
    site: ua.NodeId
    simulation: ua.NodeId
    tags: dict[str, TagNode]
    by_nodeid: dict[ua.NodeId, TagNode]

    def node_id(self, name: str) -> ua.NodeId:
        """A NodeId in the plant's namespace."""
        return ua.NodeId(name, self.namespace)


def tag_node_name(site_id: str, tag: Tag) -> str:
    """The string identifier of a tag's node: `<site>.<module>.<tag>`, truth under Simulation."""
    if tag.ground_truth:
        return f"{site_id}.{SIMULATION}.{tag.id}"
    return f"{site_id}.{tag.id}"


def unece_unit_id(code: str) -> int:
    """The EUInformation.UnitId of a UNECE Rec. 20 common code (OPC 10000-8, 5.6.3)."""
    unit_id = 0
    for char in code.upper()[:3]:
        unit_id = (unit_id << 8) | ord(char)
    return unit_id


def eu_information(tag: Tag) -> ua.EUInformation:
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unece_unit_id(tag.unit.unece),
        DisplayName=ua.LocalizedText(tag.unit.symbol),
        Description=ua.LocalizedText(tag.unit.name),
    )


async def build_address_space(
    server: Server, namespace: int, site_id: str, tags: Iterable[Tag]
) -> PlantNodes:
    """Add the site, module and tag nodes of `tags` to the server; return them by id."""
    items: list[ua.AddNodesItem] = []
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    site = ua.NodeId(site_id, namespace)
    simulation = ua.NodeId(f"{site_id}.{SIMULATION}", namespace)
    items.append(_folder(site, objects, namespace, site_id, f"Pod at site {site_id}"))
    items.append(_folder(simulation, site, namespace, SIMULATION, SIMULATION_NOTE))
    modules: set[str] = set()
    nodes: dict[str, TagNode] = {}
    for tag in tags:
        parent_name = (
            f"{site_id}.{SIMULATION}.{tag.module}"
            if tag.ground_truth
            else (f"{site_id}.{tag.module}")
        )
        parent = ua.NodeId(parent_name, namespace)
        if parent_name not in modules:
            modules.add(parent_name)
            note = f"{tag.module} ({tag.module_type})"
            if tag.ground_truth:
                note = f"{SIMULATION_NOTE} Module {note}."
            items.append(
                _module(
                    parent, simulation if tag.ground_truth else site, namespace, tag.module, note
                )
            )
        nodeid = ua.NodeId(tag_node_name(site_id, tag), namespace)
        items.extend(_tag_items(tag, nodeid, parent, namespace))
        _, vtype, convert = _TYPES[tag.data_type]
        nodes[tag.id] = TagNode(tag, nodeid, vtype, convert)
    results = await server.iserver.isession.add_nodes(items)
    for item, result in zip(items, results, strict=True):
        if not result.StatusCode.is_good():
            raise RuntimeError(f"cannot add node {item.RequestedNewNodeId}: {result.StatusCode}")
    return PlantNodes(
        namespace=namespace,
        site=site,
        simulation=simulation,
        tags=nodes,
        by_nodeid={node.nodeid: node for node in nodes.values()},
    )


def _folder(
    nodeid: ua.NodeId, parent: ua.NodeId, ns: int, name: str, description: str
) -> ua.AddNodesItem:
    return object_item(
        nodeid, name, ns, parent, ua.NodeId(ua.ObjectIds.FolderType), description=description
    )


def _module(
    nodeid: ua.NodeId, parent: ua.NodeId, ns: int, name: str, description: str
) -> ua.AddNodesItem:
    return object_item(
        nodeid, name, ns, parent, ua.NodeId(ua.ObjectIds.BaseObjectType), description=description
    )


def object_item(
    nodeid: ua.NodeId,
    name: str,
    name_ns: int,
    parent: ua.NodeId,
    typedef: ua.NodeId,
    reference: int = ua.ObjectIds.Organizes,
    description: str | None = None,
) -> ua.AddNodesItem:
    """An object node to add in one `add_nodes` call (folders, modules, alarm conditions)."""
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    if description is not None:
        attrs.Description = ua.LocalizedText(description)
    attrs.EventNotifier = 0
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName(name, name_ns)
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(reference)
    item.TypeDefinition = typedef
    item.NodeAttributes = attrs
    return item


def _tag_items(tag: Tag, nodeid: ua.NodeId, parent: ua.NodeId, ns: int) -> list[ua.AddNodesItem]:
    datatype, vtype, convert = _TYPES[tag.data_type]
    access = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask
    if tag.access is Access.SETPOINT and not tag.ground_truth:
        access |= ua.AccessLevel.CurrentWrite.mask
    description = tag.description
    if tag.ground_truth:
        description = f"{SIMULATION_NOTE} {description}"
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(tag.name)
    attrs.Description = ua.LocalizedText(description)
    attrs.DataType = ua.NodeId(datatype)
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.ArrayDimensions = None
    attrs.Value = ua.Variant(convert(0), vtype)
    attrs.AccessLevel = access
    attrs.UserAccessLevel = access
    attrs.Historizing = True
    attrs.MinimumSamplingInterval = 0.0
    attrs.WriteMask = 0
    attrs.UserWriteMask = 0
    if tag.data_type in (DataType.FLOAT, DataType.INT):
        type_id = ua.ObjectIds.AnalogItemType
    elif tag.data_type is DataType.ENUM:
        type_id = ua.ObjectIds.MultiStateDiscreteType
    else:
        type_id = ua.ObjectIds.BaseDataVariableType
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName(tag.name, ns)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
    item.TypeDefinition = ua.NodeId(type_id)
    item.NodeAttributes = attrs
    items = [item]
    name = nodeid.Identifier
    if type_id == ua.ObjectIds.AnalogItemType:
        items.append(
            _property(
                ua.NodeId(f"{name}.EngineeringUnits", ns),
                nodeid,
                "EngineeringUnits",
                ua.Variant(eu_information(tag)),
                ua.ObjectIds.EUInformation,
            )
        )
        items.append(
            _property(
                ua.NodeId(f"{name}.EURange", ns),
                nodeid,
                "EURange",
                ua.Variant(ua.Range(Low=tag.low, High=tag.high)),
                ua.ObjectIds.Range,
            )
        )
    elif type_id == ua.ObjectIds.MultiStateDiscreteType:
        states = [ua.LocalizedText(state) for state in tag.states]
        items.append(
            _property(
                ua.NodeId(f"{name}.EnumStrings", ns),
                nodeid,
                "EnumStrings",
                ua.Variant(states, ua.VariantType.LocalizedText),
                ua.ObjectIds.LocalizedText,
                array=True,
            )
        )
    return items


def _property(
    nodeid: ua.NodeId,
    parent: ua.NodeId,
    name: str,
    value: ua.Variant,
    datatype: int,
    array: bool = False,
) -> ua.AddNodesItem:
    # Standard property browse names live in namespace 0, so generic clients find them.
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(name)
    attrs.DataType = ua.NodeId(datatype)
    attrs.Value = value
    if array:
        attrs.ValueRank = ua.ValueRank.OneDimension
        attrs.ArrayDimensions = [0]
    else:
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.ArrayDimensions = None
    attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.WriteMask = 0
    attrs.UserWriteMask = 0
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName(name, 0)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
    item.TypeDefinition = ua.NodeId(ua.ObjectIds.PropertyType)
    item.NodeAttributes = attrs
    return item
