"""A real rclpy server of std_srvs/Trigger ``/svc`` for the service-call tests.

``answer``: answers at once; ``hang``: takes the request and never answers (a server that died
inside its callback, as far as the caller can tell). Prints ``ready`` once serving and
``request`` for each request it takes.
"""

import sys
import time

import rclpy
from rclpy.node import Node
from std_srvs.srv import Trigger


def main() -> None:
    mode = sys.argv[1]
    rclpy.init()
    node = Node('trigger_server')

    def serve(request, response):
        print('request', flush=True)
        if mode == 'hang':
            while True:
                time.sleep(1.0)
        response.success, response.message = True, f'answered by {node.get_name()}'
        return response

    node.create_service(Trigger, '/svc', serve)
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
