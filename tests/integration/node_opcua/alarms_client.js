// node-opcua against the plant's OPC UA server: condition events, ConditionRefresh,
// Acknowledge, Confirm, TimedShelve and Unshelve, as an operator and as a viewer.
//
//   node alarms_client.js URL CONDITION_ID OPERATOR:PASSWORD VIEWER:PASSWORD CERT.pem KEY.pem URI
//
// The server opens sessions only for client certificates it trusts: the test makes one and
// puts it in the server's trusted folder.
//
// Prints one JSON object: the status of every call and the condition events it saw.
"use strict";
const {
    OPCUAClient,
    AttributeIds,
    DataType,
    MessageSecurityMode,
    SecurityPolicy,
    UserTokenType,
    TimestampsToReturn,
    ClientMonitoredItem,
    constructEventFilter,
    callConditionRefresh,
    acknowledgeCondition,
    confirmCondition,
    resolveNodeId,
    coerceNodeId,
} = require("node-opcua-client");

const FIELDS = [
    "EventId",
    "ConditionId",
    "ConditionName",
    "Message",
    "Severity",
    "Retain",
    "ActiveState.Id",
    "AckedState.Id",
    "ConfirmedState.Id",
    "ShelvingState.CurrentState",
    "SuppressedOrShelved",
    "ClientUserId",
    "Comment",
];
const WAIT_MS = 20000;

// One connection per user: asyncua serves one session per secure channel.
async function session(options, url, credentials) {
    const client = OPCUAClient.create(options);
    await client.connect(url);
    const [userName, password] = credentials.split(":");
    const opened = await client.createSession({ type: UserTokenType.UserName, userName, password });
    return { client, session: opened };
}

async function main() {
    const [url, conditionText, operator, viewer, certificateFile, privateKeyFile, uri] =
        process.argv.slice(2);
    const conditionId = coerceNodeId(conditionText);
    const shelvingId = coerceNodeId(conditionText + ".ShelvingState");
    const out = { calls: {}, events: [] };
    const options = {
        applicationName: "node-opcua alarms test",
        applicationUri: uri,
        certificateFile,
        privateKeyFile,
        endpointMustExist: false,
        securityMode: MessageSecurityMode.None,
        securityPolicy: SecurityPolicy.None,
        connectionStrategy: { maxRetry: 2, initialDelay: 200 },
    };
    const operatorLink = await session(options, url, operator);
    const viewerLink = await session(options, url, viewer);
    const alice = operatorLink.session;
    const victor = viewerLink.session;
    const subscription = await alice.createSubscription2({
        requestedPublishingInterval: 50,
        requestedMaxKeepAliveCount: 20,
        publishingEnabled: true,
    });
    const waiters = [];
    const item = ClientMonitoredItem.create(
        subscription,
        { nodeId: resolveNodeId("Server"), attributeId: AttributeIds.EventNotifier },
        {
            queueSize: 1000,
            // OfType of the standard supertype: the server's own subtypes must match it.
            filter: constructEventFilter(FIELDS, [resolveNodeId("AlarmConditionType")]),
        },
        TimestampsToReturn.Neither
    );
    item.on("changed", (values) => {
        const event = {};
        FIELDS.forEach((name, i) => {
            const v = values[i] ? values[i].value : null;
            event[name] = v && v.text !== undefined ? v.text : v;
        });
        if (event.ConditionId && event.ConditionId.toString() === conditionId.toString()) {
            out.events.push({
                eventId: event.EventId ? event.EventId.toString("hex") : null,
                message: event.Message,
                active: event["ActiveState.Id"],
                acked: event["AckedState.Id"],
                confirmed: event["ConfirmedState.Id"],
                shelving: event["ShelvingState.CurrentState"],
                user: event.ClientUserId,
                comment: event.Comment,
                retain: event.Retain,
                _raw: event.EventId,
            });
            waiters.splice(0).forEach((w) => w());
        }
    });
    await new Promise((resolve) => item.once("initialized", resolve));

    const until = async (predicate, what) => {
        const deadline = Date.now() + WAIT_MS;
        while (!out.events.some(predicate)) {
            if (Date.now() > deadline) {
                throw new Error("timed out waiting for " + what + ": " + JSON.stringify(out));
            }
            await new Promise((resolve) => {
                waiters.push(resolve);
                setTimeout(resolve, 200);
            });
        }
        return out.events.filter(predicate).slice(-1)[0];
    };

    out.calls.refresh = (await callConditionRefresh(alice, subscription.subscriptionId)).name;
    const active = await until((e) => e.active === true, "the active condition");
    const eventId = active._raw;
    out.calls.viewerAcknowledge = (
        await acknowledgeCondition(victor, conditionId, eventId, "viewer tries")
    ).name;
    out.calls.acknowledge = (
        await acknowledgeCondition(alice, conditionId, eventId, "ack from node-opcua")
    ).name;
    const acked = await until((e) => e.acked === true, "the acknowledged condition");
    out.calls.confirm = (
        await confirmCondition(alice, conditionId, acked._raw, "confirmed from node-opcua")
    ).name;
    await until((e) => e.confirmed === true, "the confirmed condition");
    const shelve = await alice.call({
        objectId: shelvingId,
        methodId: resolveNodeId("ShelvedStateMachineType_TimedShelve"),
        inputArguments: [{ dataType: DataType.Double, value: 4 * 3600000 }],
    });
    out.calls.timedShelve = shelve.statusCode.name;
    await until((e) => e.shelving === "TimedShelved", "the shelved condition");
    const unshelve = await alice.call({
        objectId: shelvingId,
        methodId: resolveNodeId("ShelvedStateMachineType_Unshelve"),
        inputArguments: [],
    });
    out.calls.unshelve = unshelve.statusCode.name;
    await until((e) => e.shelving === "Unshelved" && e.user === "alice", "the unshelved condition");

    out.events.forEach((e) => delete e._raw);
    await subscription.terminate();
    for (const link of [viewerLink, operatorLink]) {
        await link.session.close();
        await link.client.disconnect();
    }
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error) + "\n");
    process.exit(1);
});
