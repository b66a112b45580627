"""Starts moto for sagaform, with changes to its Lambda and Step Functions behaviour.

moto never runs Lambda code here (no Docker); sagaform-local runs the real function binaries
instead. For the emulated services to reach them, this launcher patches moto in-process before it
serves anything:

1. Lambda Invoke is forwarded over HTTP to the sagaform-local Invoke API registered for the
   function. Registration: POST /moto-api/config with
   {"sagaform": {"invoke_endpoint": "http://127.0.0.1:PORT", "functions": ["name", ...]}}
   (without "functions", the endpoint serves every function not registered elsewhere), so the
   local environments of several stacks can share one moto; {"sagaform": {"unregister": URL}}
   removes an endpoint. Every invoke goes through moto's Lambda backend, so this covers the Step
   Functions interpreter's `arn:aws:states:::lambda:invoke` Tasks as well as a client calling
   Invoke on moto. The function must exist in moto (as on AWS, an unknown name is a
   ResourceNotFoundException); a function error comes back as the X-Amz-Function-Error header
   with the function's error JSON, so Step Functions matches Retry/Catch on its errorType.
   A function with no endpoint gets moto's usual answer.
2. moto's own SQS event source mapping delivery is switched off. moto would receive the messages
   during SendMessage and hand them to its Lambda backend, deleting them whatever the function
   did; sagaform-local polls the queue itself with the mapping's settings instead.

3. State machines created by CloudFormation land in the backend the Step Functions API uses.
   With {"stepfunctions": {"execute_state_machine": true}} moto serves the API from its parser
   backend, while its CloudFormation handlers still write to the plain one, so StartExecution on
   a state machine of a stack answered StateMachineDoesNotExist.

4. DynamoDB item operations are atomic, as on AWS. moto checks a write's condition and then writes
   without a lock while its server answers each request on a thread of its own, so two
   concurrent conditional PutItems could both succeed (an idempotency claim won twice). One lock
   over the DynamoDB backend's item operations and transactions serialises them.

5. A KMS key created by CloudFormation takes the template's tags. moto hands the template's
   `Tags` ([{"Key", "Value"}], as every CloudFormation resource spells them) to the KMS API's
   tagging, which expects `TagKey`/`TagValue`, and the stack creation fails with a KeyError that
   leaves DescribeStacks answering an empty 500.

GET /moto-api/config shows {"sagaform": {"invoke_forwarding": true, "default_endpoint": ...,
"routes": {"function": URL}}}, so a client can tell this launcher from a plain moto_server.

Usage: python moto_launcher.py PORT [--exit-with-parent]
With --exit-with-parent the server stops when the process that started it is gone (tests);
without, it runs until it is signalled (the local environment, stopped by PID). It prints
"ready" once the server accepts connections.
"""

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import quote

# Where invokes go: per function name, else the default endpoint, else nowhere (moto answers).
# Read on every invoke so that registration and unregistration take effect at once.
_forward = {"default": None, "routes": {}}
_forward_lock = threading.Lock()


def _register(section):
    with _forward_lock:
        gone = section.get("unregister")
        if gone:
            _forward["routes"] = {
                name: url for name, url in _forward["routes"].items() if url != gone
            }
            if _forward["default"] == gone:
                _forward["default"] = None
        endpoint = section.get("invoke_endpoint")
        if endpoint:
            functions = section.get("functions")
            if functions is None:
                _forward["default"] = endpoint
            else:
                # The endpoint's previous functions are replaced by this list.
                routes = {n: u for n, u in _forward["routes"].items() if u != endpoint}
                routes.update({name: endpoint for name in functions})
                _forward["routes"] = routes


def _endpoint_for(function_name):
    with _forward_lock:
        return _forward["routes"].get(function_name) or _forward["default"]

# Longer than Lambda's 15-minute maximum: sagaform-local enforces each function's own timeout
# and answers with a timeout error, so this only bounds a supervisor that hangs.
FORWARD_TIMEOUT_SECONDS = 960


def _patch_config():
    from moto.moto_api._internal import models as api_models

    backend_class = type(api_models.moto_api_backend)
    original_set = backend_class.set_config
    original_get = backend_class.get_config

    def set_config(self, config):
        if "sagaform" in config:
            _register(config.get("sagaform") or {})
        original_set(self, config)

    def get_config(self):
        config = original_get(self)
        with _forward_lock:
            config["sagaform"] = {
                "invoke_forwarding": True,
                "default_endpoint": _forward["default"],
                "routes": dict(_forward["routes"]),
            }
        return config

    backend_class.set_config = set_config
    backend_class.get_config = get_config


def _forward_invoke(endpoint, function, body, headers, response_headers):
    from moto.awslambda.exceptions import LambdaClientError, UnknownFunctionException

    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    else:
        data = str(body).encode("utf-8")
    invocation_type = headers.get("X-Amz-Invocation-Type") or headers.get(
        "x-amz-invocation-type"
    ) or "RequestResponse"
    url = f"{endpoint.rstrip('/')}/2015-03-31/functions/{quote(function.function_name, safe='')}/invocations"
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": invocation_type,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT_SECONDS) as response:
            payload = response.read()
            function_error = response.headers.get("X-Amz-Function-Error")
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")
        if error.code == 404:
            raise UnknownFunctionException(function.function_arn)
        code = "TooManyRequestsException" if error.code == 429 else "ServiceException"
        raise LambdaClientError(code, f"sagaform-local answered {error.code}: {detail}")
    except (urllib.error.URLError, OSError) as error:
        raise LambdaClientError(
            "ServiceException",
            f"sagaform-local Invoke API at {endpoint} is registered but unreachable: {error}",
        )
    if function_error:
        response_headers["x-amz-function-error"] = function_error
    return payload


def _patch_invoke():
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    # The simple backend (use_docker false) overrides invoke, so both classes are patched.
    for backend_class in (LambdaBackend, LambdaSimpleBackend):
        original = backend_class.invoke

        def invoke(
            self,
            function_name,
            qualifier,
            body,
            headers,
            response_headers,
            _original=original,
        ):
            with _forward_lock:
                registered = bool(_forward["routes"]) or bool(_forward["default"])
            if not registered:
                return _original(
                    self, function_name, qualifier, body, headers, response_headers
                )
            # Resolves names, ARNs and qualifiers, and fails like AWS for an unknown function.
            function = self.get_function(function_name, qualifier)
            endpoint = _endpoint_for(function.function_name)
            if not endpoint:
                return _original(
                    self, function_name, qualifier, body, headers, response_headers
                )
            payload = _forward_invoke(
                endpoint, function, body, headers, response_headers
            )
            response_headers["Content-Length"] = str(len(payload))
            return payload

        backend_class.invoke = invoke


def _patch_event_source_mappings():
    from moto.awslambda.models import LambdaBackend
    from moto.sqs.models import sqs_backends

    original = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self, spec):
        mapping = original(self, spec)
        # The mapping stays listed (ListEventSourceMappings is how sagaform-local finds it);
        # only the queue's hook that would deliver messages from inside SendMessage goes.
        for queue in sqs_backends[self.account_id][self.region_name].queues.values():
            if queue.lambda_event_source_mappings.get(mapping.function_arn) is mapping:
                del queue.lambda_event_source_mappings[mapping.function_arn]
        return mapping

    LambdaBackend.create_event_source_mapping = create_event_source_mapping


def _patch_state_machine_resources():
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.responses import get_backend

    class _ApiRegions:
        def __init__(self, account_id):
            self.account_id = account_id

        def __getitem__(self, region_name):
            return get_backend(self.account_id, region_name)

    class _ApiBackends:
        # The CloudFormation handlers of models.py read this module global at call time.
        def __getitem__(self, account_id):
            return _ApiRegions(account_id)

    sfn_models.stepfunctions_backends = _ApiBackends()


def _patch_dynamodb_atomicity():
    from moto.dynamodb.models import DynamoDBBackend

    # Reentrant: a transaction's items go through the same backend methods.
    lock = threading.RLock()

    def atomic(method):
        def locked(*args, **kwargs):
            with lock:
                return method(*args, **kwargs)

        return locked

    for name in (
        "put_item",
        "get_item",
        "update_item",
        "delete_item",
        "query",
        "scan",
        "transact_write_items",
        "transact_get_items",
        "batch_get_item",
    ):
        method = getattr(DynamoDBBackend, name, None)
        if method is not None:
            setattr(DynamoDBBackend, name, atomic(method))


def _patch_kms_key_tags():
    from moto.kms.models import Key

    create = Key.create_from_cloudformation_json.__func__

    def create_with_cloudformation_tags(cls, resource_name, cloudformation_json, *args, **kwargs):
        properties = cloudformation_json.get("Properties", {})
        properties["Tags"] = [
            {"TagKey": tag["Key"], "TagValue": tag["Value"]} if "Key" in tag else tag
            for tag in properties.get("Tags", [])
        ]
        return create(cls, resource_name, cloudformation_json, *args, **kwargs)

    Key.create_from_cloudformation_json = classmethod(create_with_cloudformation_tags)


def main():
    port = int(sys.argv[1])
    exit_with_parent = "--exit-with-parent" in sys.argv[2:]
    _patch_config()
    _patch_invoke()
    _patch_event_source_mappings()
    _patch_state_machine_resources()
    _patch_dynamodb_atomicity()
    _patch_kms_key_tags()

    from moto.server import ThreadedMotoServer

    parent = os.getppid()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    try:
        while not exit_with_parent or os.getppid() == parent:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    server.stop()


main()
