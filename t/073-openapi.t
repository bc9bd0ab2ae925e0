#!/usr/bin/perl

# The OpenAPI document that Pulp's clients read first: served at
# docs/api.json whatever the query string, OpenAPI 3 valid (checked with
# pulp-glue's own model of the specification, when python3 with pydantic 2
# is there, and structurally here in any case), with the versions of Pulp
# it follows, every route the admin API serves and nothing else, each
# reference resolved, and an ETag that a client may revalidate with.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use File::Spec;

use PT::Nginx;
use PT::Pulp;
use PT::Pull;

my $t = PT::Nginx->new(conf => admin_conf())->start;

my $r = $t->get("$API/docs/api.json?bindings&component=container");
is($r->{status}, 200, 'docs/api.json, with a query string');
like($r->{headers}{'content-type'}, qr{^application/json}, '... JSON');
my $doc = $r->{json};
ok($doc, '... that parses');
is($t->get("$API/docs/api.json")->{content}, $r->{content}, '... the same without one');

my $etag = $r->{headers}{etag};
like($etag // '', qr/^"[0-9a-f]{32}"$/, 'an ETag');
is($t->get("$API/docs/api.json", headers => { 'If-None-Match' => $etag })->{status}, 304,
   'If-None-Match with it: 304');
is($t->get("$API/docs/api.json", headers => { 'If-None-Match' => '"other"' })->{status}, 200,
   'another: 200');
is($t->post("$API/docs/api.json", {})->{status}, 405, 'read-only');

like($doc->{openapi}, qr/^3\.0\.\d+$/, 'OpenAPI 3');
is_deeply($doc->{info}{'x-pulp-app-versions'}, { core => '3.73.0', container => '2.23.0' },
          'info.x-pulp-app-versions: the core and container versions followed');
is_deeply($doc->{components}{securitySchemes}{basicAuth}, { type => 'http', scheme => 'basic',
          description => $doc->{components}{securitySchemes}{basicAuth}{description} },
          'a Basic security scheme');


# every route, and nothing else

my @ROUTES = qw(
    remotes/container/pull-through/ distributions/container/pull-through/ tasks/
    repositories/container/container/ distributions/container/container/
    content/container/tags/ content/container/manifests/ content/container/blobs/
    pulp_container/namespaces/ artifacts/ remotes/container/container/
    remotes/ repositories/ distributions/ content/ status/ orphans/cleanup/
);
my @HREFS = qw(
    container_container_pull_through_remote_href container_container_pull_through_distribution_href
    task_href container_container_repository_href container_container_repository_version_href
    container_container_distribution_href container_tag_href container_manifest_href
    container_blob_href container_container_namespace_href artifact_href
    container_container_remote_href
);

is_deeply([ sort keys %{ $doc->{paths} } ],
          [ sort((map { "$API/$_" } @ROUTES), (map { "{$_}" } @HREFS),
                 '{container_container_repository_href}versions/') ],
          'the paths: every collection and href the admin API serves, nothing else');

my (%ids, @refs);
for my $path (sort keys %{ $doc->{paths} }) {
    my $item = $doc->{paths}{$path};
    for my $m (grep { $item->{$_} } qw(get put post patch delete)) {
        my $op = $item->{$m};
        $ids{ $op->{operationId} }++;
        ok(@{ $op->{security} || [] } == 2, "$op->{operationId}: Basic credentials, or none");
        for my $status (keys %{ $op->{responses} }) {
            push @refs, $op->{responses}{$status}{content}{'application/json'}{schema}{'$ref'};
        }
        push @refs, $op->{requestBody}{content}{'application/json'}{schema}{'$ref'} if $op->{requestBody};
    }
    if ($path =~ /^\{(\w+)\}/) {
        is_deeply([ map { [ $_->{name}, $_->{in}, $_->{required} ? 1 : 0 ] } @{ $item->{parameters} } ],
                  [ [ $1, 'path', 1 ] ], "$path: its href parameter");
    }
}
is_deeply([ grep { $ids{$_} > 1 } keys %ids ], [], 'operation ids are unique');
ok($ids{$_}, "operation $_")
    for qw(remotes_container_pull_through_list remotes_container_pull_through_create
           remotes_container_pull_through_read remotes_container_pull_through_update
           remotes_container_pull_through_partial_update remotes_container_pull_through_delete
           distributions_container_pull_through_list distributions_container_pull_through_create
           tasks_list tasks_read repositories_container_container_versions_list
           repositories_container_container_versions_read content_container_tags_list
           content_container_manifests_read pulp_container_namespaces_list artifacts_read
           remotes_list repositories_list distributions_list content_list
           remotes_container_container_list remotes_container_container_read
           status_read orphans_cleanup_cleanup);

my @missing = grep { !($_ =~ m{^#/components/schemas/(.+)$} && $doc->{components}{schemas}{$1}) } @refs;
is_deeply(\@missing, [], 'every reference resolves');


# what the tables say, where the tables say it

my $schemas = $doc->{components}{schemas};
my $create = $schemas->{'container.ContainerPullThroughRemote'};
is_deeply([ sort @{ $create->{required} } ], [ qw(name url) ], 'a remote\'s create: name and url required');
ok($create->{properties}{password}{writeOnly}, '... password write-only');
my $shown = $schemas->{'container.ContainerPullThroughRemoteResponse'}{properties};
ok(!$shown->{password} && $shown->{hidden_fields}, '... not shown, named in hidden_fields');
ok(!exists $schemas->{'Patchedcontainer.ContainerPullThroughRemote'}{required}, 'a PATCH requires nothing');

my %list_params = map { $_->{name} => $_ } @{ $doc->{paths}{"$API/tasks/"}{get}{parameters} };
ok($list_params{$_}, "tasks_list takes $_")
    for qw(limit offset ordering fields exclude_fields state state__in name__contains
           created_resources reserved_resources reserved_resources__in exclusive_resources
           shared_resources__in);
is($list_params{state__in}{schema}{type}, 'array', '... __in as a list');
is($list_params{state__in}{explode}, JSON::PP::false, '... comma-separated');
ok(grep({ $_ eq '-pulp_created' } @{ $list_params{ordering}{schema}{items}{enum} }),
   'ordering: its values and their reverse');


# every answer shows what its schema says, and only that

my $remote = create_remote($t, name => 'r', url => 'https://r.example', password => 'p');
create_dist($t, name => 'd', base_path => 'd', remote => $remote->{pulp_href});

for my $case ([ $REMOTES, 'container.ContainerPullThroughRemoteResponse' ],
              [ $DISTS, 'container.ContainerPullThroughDistributionResponse' ],
              [ $TASKS, 'TaskResponse' ],
              [ "$API/distributions/", 'DistributionResponse' ],
              [ "$API/status/", 'StatusResponse', 1 ]) {
    my ($path, $name, $single) = @$case;
    my $answer = $t->get($path)->{json};
    my $obj = $single ? $answer : $answer->{results}[0];
    is_deeply([ sort keys %$obj ], [ sort keys %{ $schemas->{$name}{properties} } ],
              "$path: the keys of $name");
}


# pulp-glue's own model of OpenAPI 3, where it can run

my $glue = File::Spec->catdir($PT::Nginx::REPO, '..', 'shared', 'vendor', 'pulp-cli', 'pulp-glue', 'src');
SKIP: {
    my $py = `python3 -c 'import pydantic' 2>&1`;
    skip "pulp-glue's model needs python3 with pydantic 2: $py", 2 if $? || !-d $glue;

    PT::Util::spew($t->dir . '/api.json', $r->{content});
    my ($rc, $out) = run_cmd('python3', '-c', <<'PY', $glue, $t->dir . '/api.json');
import json, sys
sys.path.insert(0, sys.argv[1])
from pulp_glue.common import oas
spec = oas.OpenAPISpec.model_validate(json.load(open(sys.argv[2])))
print(len(spec.operations))
PY
    is($rc, 0, 'pulp-glue validates the document') or diag($out);
    like($out, qr/^\d+$/m, '... and indexes its operations');
}

$t->stop;

done_testing;
