"""``[gateway]`` settings read only at start: changing one in the running gateway's file says
that it takes effect at the next start; the others apply at once."""

from tests.support.configs import socket_emoncms_config
from tests.support.daemon import free_port, rewrite_config


def test_a_setting_read_only_at_start_says_so_when_changed(gateway_factory, emoncms):
    port = free_port()
    text = socket_emoncms_config(port, emoncms.url, "config_check_interval = 0.2")
    gw = gateway_factory(text)
    rewrite_config(gw.config_path, text.replace("config_check_interval = 0.2", "config_check_interval = 0.2\n"
                                                "    log_max_mb = 9\n    status_bind = 127.0.0.2\n    clock = trusted"))
    gw.wait_for_log(r"WARNING oemgateway: \[gateway\] status_bind changed: takes effect at the next start")
    gw.wait_for_log(r"WARNING oemgateway: \[gateway\] log_max_mb changed: takes effect at the next start")
    assert "clock changed" not in gw.log
