"""moto_s3_server.py: run moto's server with one fix for its signature check.

In server mode moto recomputes SigV4 signatures from werkzeug's request.url,
whose query string has %2F decoded to '/', so every correctly signed request
with a '/' in a query value (ListObjectsV2 prefix=a/b, from boto3 as well as
from shardq) is refused with SignatureDoesNotMatch. This wrapper gives moto the
raw query string the client sent; everything else is moto as released.

usage: python3 moto_s3_server.py -H 127.0.0.1 -p PORT
"""
import sys
from urllib.parse import urlsplit, urlunsplit

from moto.core.responses import BaseResponse
from moto.server import main

_setup_class = BaseResponse.setup_class


def _setup_class_with_raw_query(self, request, full_url, headers, *args, **kwargs):
    environ = getattr(request, "environ", None)
    if environ is not None and "QUERY_STRING" in environ:
        parts = urlsplit(full_url)
        full_url = urlunsplit((parts.scheme, parts.netloc, parts.path, environ["QUERY_STRING"], parts.fragment))
    return _setup_class(self, request, full_url, headers, *args, **kwargs)


BaseResponse.setup_class = _setup_class_with_raw_query

if __name__ == "__main__":
    main(sys.argv[1:])
